"""Test accuracy of a classifier on a real split kept on device: one transfer per evaluation.

`put_split` uploads a split once, cut into global batches of `batch_size` (the last one padded and
masked) as arrays `[num_batches, batch_size, ...]` split along the batch axis over the mesh's
`data` devices. `Evaluator` compiles one step `(variables, split, index, counts) -> counts` that
classifies batch `index` and adds its (correct, total) to `counts` on device; an evaluation runs it
once per batch and transfers only the final two numbers. In a multi-process run each process
uploads only its share of the split (`sharding.split_share`), as its columns of every global batch;
the counts are summed over all processes by the step.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fastdfkd_jax import compilation, sharding
from fastdfkd_jax.data import augment


def put_split(split: dict, mesh: Mesh, batch_size: int) -> dict:
    """A host split `{'image' [N, H, W, C], 'label' [N]}` on device, batched for evaluation.

    Returns:
      `{'image': [num_batches, batch_size, H, W, C], 'label': [num_batches, batch_size],
      'mask': bool [num_batches, batch_size]}` (False on padding rows), sharded along axis 1.
    """
    sharding.check_batch_divides(batch_size, mesh, "eval_batch_size")
    local = sharding.process_rows(batch_size, mesh)
    local_batch = local.stop - local.start
    share, share_size = sharding.split_share(len(split["label"]))
    images, labels = np.asarray(split["image"])[share], np.asarray(split["label"])[share]
    n = len(labels)
    # Every process pads its share to the same number of whole local batches.
    num_batches = -(-share_size // local_batch)
    padded = num_batches * local_batch

    def pad(x):
        filler = np.zeros((padded - n, *x.shape[1:]), x.dtype)
        return np.concatenate([x, filler]).reshape(num_batches, local_batch, *x.shape[1:])

    local_arrays = {"image": pad(images), "label": pad(labels), "mask": pad(np.ones(n, bool))}
    placement = NamedSharding(mesh, P(None, sharding.DATA_AXIS))
    return {
        key: jax.make_array_from_process_local_data(
            placement, x, (num_batches, batch_size, *x.shape[2:])
        )
        for key, x in local_arrays.items()
    }


def _count_batch(variables, split, index, counts, *, model: nn.Module, mean, std):
    """Adds batch `index`'s (correct, total) to `counts` int32 [2].

    Args:
      variables: the classifier's `{'params', 'batch_stats'}`.
      split: from `put_split`.
      index: int32 scalar, the batch.
      counts: int32 [2], (correct, total) so far.
    """
    images, labels, mask = (split[k][index] for k in ("image", "label", "mask"))
    logits = model.apply(variables, augment.normalize(images, mean, std), train=False)
    hits = (jnp.argmax(logits, -1) == labels) & mask
    return counts + jnp.stack([hits.sum(), mask.sum()]).astype(jnp.int32)


class Evaluator:
    """`evaluator(variables, split) -> accuracy` for splits from `put_split`.

    `compile(variables, split)` compiles the step ahead of time (under the enclosing precision
    scope) and returns its seconds; a call before that compiles on first use.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], mesh: Mesh):
        self.mesh = mesh
        self._fn = functools.partial(_count_batch, model=model, mean=tuple(mean), std=tuple(std))
        self._step = None

    def compile(self, variables: dict, split: dict) -> float:
        replicated = sharding.replicated(self.mesh)
        placement = NamedSharding(self.mesh, P(None, sharding.DATA_AXIS))
        self._step, seconds = compilation.aot_compile(
            self._fn,
            variables,
            split,
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((2,), jnp.int32),
            mesh=self.mesh,
            in_shardings=(
                replicated,
                jax.tree.map(lambda _: placement, split),
                replicated,
                replicated,
            ),
            out_shardings=replicated,
            donate_argnums=3,
        )
        return seconds

    def __call__(self, variables: dict, split: dict) -> float:
        if self._step is None:
            self.compile(variables, split)
        replicated = sharding.replicated(self.mesh)
        counts = jax.device_put(np.zeros(2, np.int32), replicated)
        for i in range(split["label"].shape[0]):
            counts = self._step(variables, split, jax.device_put(np.int32(i), replicated), counts)
        correct, total = (int(c) for c in jax.device_get(counts))
        return correct / total


def make_evaluator(
    model: nn.Module, mean: Sequence[float], std: Sequence[float], mesh: Mesh, batch_size: int
):
    """`evaluate(variables, split) -> accuracy` for host splits `{'image', 'label'}`: the split is
    uploaded on every call (for one-off evaluations; runs keep theirs on device: `put_split`).
    """
    evaluator = Evaluator(model, mean, std, mesh)

    def evaluate(variables: dict, split: dict) -> float:
        return evaluator(variables, put_split(split, mesh, batch_size))

    return evaluate
