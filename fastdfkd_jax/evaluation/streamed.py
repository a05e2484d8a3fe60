"""Evaluation on a split read example by example: classification accuracy, segmentation mean IoU.

For splits that do not fit on a device (ImageNet's 50,000 validation images) or that have label
maps (NYUv2): the split is an `ExampleSource` (`data.open_split`), batched by
`data.iterate_batches` (the last batch zero-padded and masked, so one compiled step serves every
batch) while the previous batch computes. The step adds each batch to running counts kept on
device, one transfer per evaluation:

- classification: int32 [2], (correct, counted) -> `{'accuracy'}`;
- segmentation: the int32 [K, K] confusion matrix of `segmentation.confusion_matrix` (unlabeled
  pixels and padded rows skipped) -> `{'mean_iou', 'pixel_accuracy'}`.

In a multi-process run each process reads only its share of the split (`sharding.split_share`)
and feeds its rows of every global batch (`sharding.put_process_batch`); the counts are summed
over all processes by the jitted step, as in `evaluation/on_device.py`.
"""

import functools
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fastdfkd_jax import compilation, sharding
from fastdfkd_jax.data import augment, base, streaming
from fastdfkd_jax.evaluation import segmentation

# Metric name -> value, as every evaluator of a run returns them.
Scores = dict[str, float]
# The metrics each task reports, the first one the run's headline number.
METRICS = {
    "classification": ("accuracy",),
    "segmentation": ("mean_iou", "pixel_accuracy"),
}


def count_classification(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """(correct, counted) int32 [2] of logits [B, K] against labels int32 [B], rows in `mask`."""
    hits = (jnp.argmax(logits, -1) == labels) & mask
    return jnp.stack([hits.sum(), mask.sum()]).astype(jnp.int32)


def _step(variables, batch, counts, *, model, mean, std, task, num_classes):
    """`counts` plus batch's counts (see the module docstring)."""
    logits = model.apply(variables, augment.normalize(batch["image"], mean, std), train=False)
    if task == "classification":
        return counts + count_classification(logits, batch["label"], batch["mask"])
    predictions = jnp.argmax(logits, -1)
    return counts + segmentation.confusion_matrix(
        predictions, batch["label"], num_classes, mask=batch["mask"]
    )


def metrics_from_counts(counts: np.ndarray, task: str) -> dict[str, float]:
    """The task's metrics (`METRICS`) from the summed counts."""
    if task == "classification":
        correct, counted = (int(c) for c in counts)
        return {"accuracy": correct / max(counted, 1)}
    confusion = jnp.asarray(counts)
    return {
        "mean_iou": float(segmentation.mean_iou(confusion)),
        "pixel_accuracy": float(segmentation.pixel_accuracy(confusion)),
    }


class StreamEvaluator:
    """`evaluator(variables, source) -> {metric: value}` for a model on a dataset's test split.

    Args:
      model: a classifier (logits [B, K]) or segmentation model (logits [B, H, W, K]).
      info: the dataset's `DatasetInfo` (task, classes, normalization).
      mesh: the run's mesh; batches are split along `data`.
      batch_size: the global evaluation batch (divisible by the data axis).
      num_threads: decoding threads of `iterate_batches`.

    """

    def __init__(
        self,
        model: nn.Module,
        info: base.DatasetInfo,
        mesh: Mesh,
        batch_size: int,
        num_threads: int = streaming.DEFAULT_NUM_THREADS,
    ):
        sharding.check_batch_divides(batch_size, mesh, "eval_batch_size")
        self.task, self.mesh, self.batch_size = info.task, mesh, batch_size
        self.num_threads = num_threads
        rows = sharding.process_rows(batch_size, mesh)
        self.local_batch = rows.stop - rows.start
        replicated = sharding.replicated(mesh)
        self._step = jax.jit(
            functools.partial(
                _step,
                model=model,
                mean=tuple(info.mean),
                std=tuple(info.std),
                task=info.task,
                num_classes=info.num_classes,
            ),
            in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
            out_shardings=replicated,
            donate_argnums=2,
        )
        k = info.num_classes
        self._zeros = np.zeros((2,) if info.task == "classification" else (k, k), np.int32)

    @property
    def metric_names(self) -> Sequence[str]:
        return METRICS[self.task]

    def _batches(self, source: streaming.ExampleSource):
        share, share_size = sharding.split_share(len(source))
        for batch in streaming.iterate_batches(
            source,
            self.local_batch,
            indices=range(share.start, share.stop),
            pad_to=share_size,
            num_threads=self.num_threads,
        ):
            yield sharding.put_process_batch(batch, self.mesh, self.batch_size)

    def compile(self, variables: dict, source: streaming.ExampleSource) -> float:
        """Compiles the step for `source`'s example shapes ahead of time; returns the seconds."""
        example = source[0]
        image = np.asarray(example["image"])
        label = np.asarray(example["label"])
        shapes = {
            "image": jax.ShapeDtypeStruct((self.batch_size, *image.shape), jnp.float32),
            "label": jax.ShapeDtypeStruct((self.batch_size, *label.shape), jnp.int32),
            "mask": jax.ShapeDtypeStruct((self.batch_size,), jnp.bool_),
        }
        counts = jax.ShapeDtypeStruct(self._zeros.shape, jnp.int32)
        start = time.perf_counter()
        self._step = compilation.compile_jitted(self._step, variables, shapes, counts)
        return time.perf_counter() - start

    def __call__(self, variables: dict, source: streaming.ExampleSource) -> dict[str, float]:
        counts = jax.device_put(self._zeros, sharding.replicated(self.mesh))
        for batch in self._batches(source):
            counts = self._step(variables, batch, counts)
        return metrics_from_counts(np.asarray(jax.device_get(counts)), self.task)
