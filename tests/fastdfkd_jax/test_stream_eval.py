"""Streamed evaluation: accuracy and mean IoU equal plain numpy references, padded and sharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import models, sharding
from fastdfkd_jax.data import base, streaming
from fastdfkd_jax.evaluation import streamed as stream_eval

pytestmark = pytest.mark.usefixtures("fast_compile")

K = 4
CLASS_INFO = base.DatasetInfo("toy", (8, 8, 3), K, (0.5,) * 3, (0.25,) * 3, 10, 10)
SEG_INFO = base.DatasetInfo("toy_seg", (8, 8, 3), K, (0.5,) * 3, (0.25,) * 3, 10, 10,
                            task="segmentation")  # fmt: skip


def mesh_of(n):
    return sharding.make_mesh(sharding.mesh_config(data=n))


def classification_source(n=11):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, K, n)
    return streaming.ArraySource({"image": images, "label": labels})


def segmentation_source(n=7, size=(12, 10)):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    labels = rng.integers(0, K, (n, *size)).astype(np.uint8)
    labels[rng.random((n, *size)) < 0.2] = base.IGNORE_LABEL  # unlabeled pixels
    return streaming.ArraySource({"image": images, "label": labels})


def logits_of(model, variables, source, info):
    images = np.stack([source[i]["image"] for i in range(len(source))]).astype(np.float32) / 255
    inputs = (images - np.asarray(info.mean)) / np.asarray(info.std)
    return np.asarray(model.apply(variables, jnp.asarray(inputs), train=False))


def numpy_iou(predictions, labels):
    valid = labels != base.IGNORE_LABEL
    confusion = np.bincount(labels[valid] * K + predictions[valid], minlength=K * K).reshape(K, K)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    return iou.mean(), tp.sum() / confusion.sum()


def test_accuracy_equals_a_plain_forward_pass():
    model = models.create_model("resnet8", num_classes=K)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)), train=False)
    source = classification_source()
    evaluator = stream_eval.StreamEvaluator(model, CLASS_INFO, mesh_of(1), 4, num_threads=2)
    got = evaluator(variables, source)  # 11 examples: the last batch holds 3 and one padded row
    labels = np.asarray([source[i]["label"] for i in range(len(source))])
    want = (logits_of(model, variables, source, CLASS_INFO).argmax(-1) == labels).mean()
    assert got == {"accuracy": pytest.approx(want)}
    assert evaluator.metric_names == ("accuracy",)


def test_mean_iou_equals_a_numpy_confusion_matrix():
    model = models.create_model("deeplabv3_tiny", num_classes=K, width=4)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12, 10, 3)), train=False)
    source = segmentation_source()
    evaluator = stream_eval.StreamEvaluator(model, SEG_INFO, mesh_of(1), 4, num_threads=1)
    compile_seconds = evaluator.compile(variables, source)
    got = evaluator(variables, source)
    predictions = logits_of(model, variables, source, SEG_INFO).argmax(-1)
    labels = np.stack([source[i]["label"] for i in range(len(source))]).astype(np.int64)
    miou, pixel_acc = numpy_iou(predictions, labels)
    assert got["mean_iou"] == pytest.approx(miou, rel=1e-6)
    assert got["pixel_accuracy"] == pytest.approx(pixel_acc, rel=1e-6)
    assert compile_seconds > 0


def test_eight_devices_give_the_same_counts_as_one():
    model = models.create_model("deeplabv3_tiny", num_classes=K, width=4)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12, 10, 3)), train=False)
    source = segmentation_source(n=13)
    results = []
    for n in (1, 8):
        mesh = mesh_of(n)
        evaluator = stream_eval.StreamEvaluator(model, SEG_INFO, mesh, 8, num_threads=2)
        results.append(evaluator(sharding.replicate(variables, mesh), source))
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_eval_batch_must_divide_the_mesh():
    model = models.create_model("resnet8", num_classes=K)
    with pytest.raises(ValueError, match="eval_batch_size=12 does not divide by the data axis"):
        stream_eval.StreamEvaluator(model, CLASS_INFO, mesh_of(8), 12)
