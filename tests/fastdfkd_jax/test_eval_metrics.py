"""Tests of the segmentation metrics: known confusion matrices, ignored pixels, masks, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.evaluation import segmentation as metrics

# 3 classes; one 2x4 map. Label 255 is unlabeled.
LABELS = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
PREDICTIONS = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
# Rows: true class, columns: predicted class (the 255 pixel is skipped).
CONFUSION = np.array([[1, 1, 0], [1, 2, 0], [1, 0, 1]])


def test_confusion_matrix_known_values():
    confusion = metrics.confusion_matrix(jnp.asarray(PREDICTIONS), jnp.asarray(LABELS), 3)
    np.testing.assert_array_equal(confusion, CONFUSION)
    assert confusion.dtype == jnp.int32


def test_mean_iou_and_accuracy_known_values():
    # IoU_c = TP / (TP + FP + FN): class 0: 1 / (1 + 2 + 1) = 1/4, class 1: 2 / (2 + 1 + 1) = 1/2,
    # class 2: 1 / (1 + 0 + 1) = 1/2.
    np.testing.assert_allclose(metrics.iou_per_class(jnp.asarray(CONFUSION)), [0.25, 0.5, 0.5])
    np.testing.assert_allclose(metrics.mean_iou(jnp.asarray(CONFUSION)), 1.25 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics.pixel_accuracy(jnp.asarray(CONFUSION)), 4 / 7, rtol=1e-6)


def test_absent_class_is_left_out_of_the_mean():
    labels = jnp.array([0, 0, 1, 1])
    confusion = metrics.confusion_matrix(labels, labels, 4)
    iou = np.asarray(metrics.iou_per_class(confusion))
    assert np.isnan(iou[2:]).all()
    assert float(metrics.mean_iou(confusion)) == 1.0


def test_mask_skips_padded_rows_and_batches_add_up():
    preds = jnp.asarray(np.stack([PREDICTIONS, PREDICTIONS[::-1]]))
    labels = jnp.asarray(np.stack([LABELS, np.zeros_like(LABELS)]))
    masked = metrics.confusion_matrix(preds, labels, 3, mask=jnp.array([True, False]))
    np.testing.assert_array_equal(masked, CONFUSION)
    full = metrics.confusion_matrix(preds, labels, 3)
    second = metrics.confusion_matrix(preds[1], labels[1], 3)
    np.testing.assert_array_equal(full, CONFUSION + np.asarray(second))


def test_jit_and_shape_check():
    fn = jax.jit(metrics.confusion_matrix, static_argnums=2)
    np.testing.assert_array_equal(fn(jnp.asarray(PREDICTIONS), jnp.asarray(LABELS), 3), CONFUSION)
    with pytest.raises(ValueError, match="predictions .* and labels .* differ"):
        metrics.confusion_matrix(jnp.zeros((2, 3), int), jnp.zeros((2, 4), int), 3)
