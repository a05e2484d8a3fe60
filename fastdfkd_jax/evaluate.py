"""Test accuracy of a classifier on a real split, batched, padded and sharded."""

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fastdfkd_jax import sharding
from fastdfkd_jax.data import augment


def _eval_step(variables, batch, *, model: nn.Module, mean, std):
    """Counts correct predictions in a padded batch.

    Args:
      variables: the classifier's `{'params', 'batch_stats'}`.
      batch: `image` float32 [B, H, W, C] in [0, 1], `label` int32 [B], `mask` bool [B] (False on
        padding rows).

    Returns:
      (correct, count): int32 scalars.

    """
    logits = model.apply(variables, augment.normalize(batch["image"], mean, std), train=False)
    hits = (jnp.argmax(logits, -1) == batch["label"]) & batch["mask"]
    return hits.sum(), batch["mask"].sum()


def make_evaluator(
    model: nn.Module, mean: Sequence[float], std: Sequence[float], mesh: Mesh, batch_size: int
) -> Callable[[dict, dict], float]:
    """Returns `evaluate(variables, split) -> accuracy` for splits `{'image', 'label'}`.

    The split is cut into global batches of `batch_size` (the last one padded and masked), so one
    compiled step serves every batch. In a multi-process run each process evaluates only its share
    of the split (`sharding.split_share`), feeding its rows of each global batch; the counts are
    summed over all processes by the jitted step.
    """
    sharding.check_batch_divides(batch_size, mesh, "eval batch_size")
    step = jax.jit(
        functools.partial(_eval_step, model=model, mean=tuple(mean), std=tuple(std)),
        in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
        out_shardings=sharding.replicated(mesh),
    )

    local = sharding.process_rows(batch_size, mesh)
    local_batch = local.stop - local.start

    def evaluate(variables: dict, split: dict) -> float:
        share, share_size = sharding.split_share(len(split["label"]))
        images, labels = split["image"][share], split["label"][share]
        n = len(labels)
        # Pad this share to whole local batches of the largest share, so every process runs the
        # same number of steps; padding rows are masked out.
        padded = -(-share_size // local_batch) * local_batch
        mask = np.arange(padded) < n
        images = np.concatenate([images, np.zeros((padded - n, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros((padded - n,), labels.dtype)])
        correct = count = 0
        for start in range(0, padded, local_batch):
            rows = slice(start, start + local_batch)
            batch = sharding.put_process_batch(
                {"image": images[rows], "label": labels[rows], "mask": mask[rows]}, mesh, batch_size
            )
            c, k = step(variables, batch)
            correct += int(c)
            count += int(k)
        return correct / count

    return evaluate
