"""Segmentation metrics: a confusion matrix accumulated over batches, mean IoU and pixel accuracy.

Pure, jittable functions. Pixels labelled ``IGNORE_LABEL`` (255, NYUv2's unlabeled pixels) or
outside ``mask`` take no part. Mean IoU averages the per-class IoU ``TP / (TP + FP + FN)`` over the
classes that occur in the labels or the predictions (a class absent from both has no IoU), as the
DFKD literature's ``StreamSegMetrics`` (VainF's, used by the original FastDFKD code) does with
``nanmean``. Sum the confusion matrices of all batches before taking the mean IoU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastdfkd_jax.data.base import IGNORE_LABEL


def confusion_matrix(
    predictions: jax.Array,
    labels: jax.Array,
    num_classes: int,
    *,
    mask: jax.Array | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> jax.Array:
    """Counts of (label, prediction) pairs.

    Args:
      predictions: int ``[N, ...]`` predicted classes (e.g. ``logits.argmax(-1)``).
      labels: int ``[N, ...]`` true classes, same shape; ``ignore_label`` marks pixels to skip.
      num_classes: K.
      mask: bool ``[N]`` (or the labels' shape): False skips the example (a padded batch row).
      ignore_label: label value that is skipped.

    Returns:
      int32 ``[K, K]``: entry ``[i, j]`` counts pixels of class i predicted as j.

    """
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ")
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    if mask is not None:
        valid &= jnp.reshape(mask, mask.shape + (1,) * (labels.ndim - mask.ndim))
    cells = num_classes * num_classes
    # Skipped pixels go to an extra bin that is dropped; integer counts stay exact.
    index = jnp.where(valid, labels * num_classes + predictions, cells)
    counts = jnp.bincount(index.ravel(), length=cells + 1)[:cells]
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def iou_per_class(confusion: jax.Array) -> jax.Array:
    """``[K]`` IoU per class; NaN for a class absent from labels and predictions."""
    confusion = confusion.astype(jnp.float32)
    true_positive = jnp.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    return jnp.where(union > 0, true_positive / jnp.where(union > 0, union, 1.0), jnp.nan)


def mean_iou(confusion: jax.Array) -> jax.Array:
    """Mean IoU over the classes present in labels or predictions (a float32 scalar)."""
    return jnp.nanmean(iou_per_class(confusion))


def pixel_accuracy(confusion: jax.Array) -> jax.Array:
    """Fraction of counted pixels predicted correctly (a float32 scalar)."""
    confusion = confusion.astype(jnp.float32)
    return jnp.trace(confusion) / jnp.maximum(confusion.sum(), 1.0)
