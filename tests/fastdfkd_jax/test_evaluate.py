"""Evaluation with the test split on device: known accuracies, padding, sharding, one compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.data import augment
from fastdfkd_jax.evaluation import on_device as evaluate
from tests.fastdfkd_jax import test_sharding as ts
from tests.fastdfkd_jax import tiny

pytestmark = pytest.mark.usefixtures("fast_compile")
MEAN, STD = (0.5,), (0.25,)


def split_of(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(size=(n, *tiny.IMAGE_SHAPE)).astype(np.float32),
        "label": rng.integers(0, tiny.NUM_CLASSES, n).astype(np.int32),
    }


def reference_accuracy(model, variables, split):
    logits = model.apply(variables, augment.normalize(split["image"], MEAN, STD), train=False)
    return float(np.mean(np.argmax(logits, -1) == split["label"]))


def test_put_split_pads_and_shards():
    mesh = ts.mesh_of(4)
    placed = evaluate.put_split(split_of(37), mesh, batch_size=8)
    assert placed["image"].shape == (5, 8, *tiny.IMAGE_SHAPE)
    assert placed["mask"].shape == (5, 8) and int(placed["mask"].sum()) == 37
    assert placed["image"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
    np.testing.assert_array_equal(np.asarray(placed["mask"]).ravel(), np.arange(40) < 37)


@pytest.mark.parametrize("devices", [1, 4])
def test_accuracy_equals_the_reference_on_a_padded_split(devices):
    teacher, tv, _, _ = tiny.make_models(jax.random.PRNGKey(0))
    split = split_of(37)  # not a multiple of the batch: the last batch is padded and masked
    mesh = ts.mesh_of(devices)
    evaluator = evaluate.Evaluator(teacher, MEAN, STD, mesh)
    placed = evaluate.put_split(split, mesh, batch_size=8)
    assert evaluator.compile(tv, placed) > 0
    accuracy = evaluator(tv, placed)
    assert accuracy == pytest.approx(reference_accuracy(teacher, tv, split))
    # Other variables, the same compiled step.
    tv2 = jax.tree.map(lambda x: x * 1.5, tv)
    assert evaluator(tv2, placed) == pytest.approx(reference_accuracy(teacher, tv2, split))
    # The one-off form uploads a host split itself.
    one_off = evaluate.make_evaluator(teacher, MEAN, STD, mesh, 8)
    assert one_off(tv, split) == pytest.approx(accuracy)
    assert jnp.isfinite(accuracy)
