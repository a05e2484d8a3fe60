"""NAYER's generator: class label embeddings through "noisy layers" into FastDFKD's generator body.

NAYER (Tran et al., CVPR 2024) has no latent z. Each image's input is the embedding of its target
class (a constant (C, D) table, e.g. CLIP text embeddings of the class names), and the batch holds
`groups` groups of C images, one image per class in class order. The embeddings are normalized by
a BatchNorm over the batch, then each group goes through its own "noisy" Dense(D -> width) layer,
which the synthesizer redraws for every batch (`redraw_noisy_layers`: kernels N(0, 1), biases 0,
as the original's `re_init_le`), and the result feeds the `Generator` body (its Dense
`l1` from `width`, then the convolutions) with no nonlinearity in between, as in the original.
Everything but the noisy layers persists from batch to batch (until the synthesizer rebuilds it).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastdfkd_jax.models import layers
from fastdfkd_jax.models.generator import Generator

# The noisy layers' kernels are redrawn from N(0, NOISY_STD^2), their biases from zero (the
# original's `re_init_le`: `normal_(weight, 0, 1)`, `zeros_(bias)`).
NOISY_STD = 1.0
# Names of the noisy layers' parameters (the leaves that `redraw_noisy_layers` replaces).
NOISY = "noisy"


class NoisyLayerGenerator(nn.Module):
    """``embeddings [groups * C, D] -> images [groups * C, img_size, img_size, nc]`` in ``[0, 1]``.

    Row ``g * C + c`` of the input is class c's embedding in group g (`group_embeddings` makes
    them); group g goes through noisy layer g.

    Attributes:
      num_classes: C, the rows of a group.
      groups: the noisy layers, one per group of C images (the batch holds groups * C images).
      noisy_width: the noisy layers' output width (the body's latent size; the original's 1000).
      ngf, img_size, nc: the body's (`Generator`).
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    num_classes: int
    groups: int
    noisy_width: int = 1000
    ngf: int = 64
    img_size: int = 32
    nc: int = 3
    dtype: Any = None

    @nn.compact
    def __call__(self, embeddings: jnp.ndarray, *, train: bool = True) -> jnp.ndarray:
        """``train`` is ignored: its BatchNorms always use batch statistics (as `Generator`)."""
        del train
        rows = self.groups * self.num_classes
        if embeddings.ndim != 2 or embeddings.shape[0] != rows:
            raise ValueError(
                f"embeddings must have shape [groups * C = {rows}, D], got {embeddings.shape}"
            )
        dim = embeddings.shape[-1]
        x = layers.batch_norm(train=True, name="bn_embed", dtype=self.dtype)(embeddings)
        kernel = self.param(
            f"{NOISY}_kernel",
            nn.initializers.normal(NOISY_STD),
            (self.groups, dim, self.noisy_width),
        )
        bias = self.param(f"{NOISY}_bias", nn.initializers.zeros, (self.groups, self.noisy_width))
        x = x.reshape(self.groups, self.num_classes, dim)
        x = jnp.einsum("gcd,gdw->gcw", x, kernel.astype(x.dtype)) + bias[:, None, :]
        body = Generator(
            nz=self.noisy_width,
            ngf=self.ngf,
            img_size=self.img_size,
            nc=self.nc,
            dtype=self.dtype,
            name="body",
        )
        return body(x.reshape(rows, self.noisy_width))


def group_embeddings(table: jnp.ndarray, groups: int) -> jnp.ndarray:
    """The generator's input: `table` [C, D] repeated `groups` times, [groups * C, D] (class order
    in each group, as the original's fixed targets).
    """
    return jnp.tile(table, (groups, 1))


def group_targets(num_classes: int, groups: int) -> jnp.ndarray:
    """The batch's target classes, int32 [groups * C]: 0..C-1 in each group."""
    return jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), groups)


def redraw_noisy_layers(params: dict, rng: jax.Array) -> dict:
    """`params` with the noisy layers' kernels drawn anew from N(0, NOISY_STD^2) and biases 0."""
    kernel = params[f"{NOISY}_kernel"]
    fresh = NOISY_STD * jax.random.normal(rng, kernel.shape, kernel.dtype)
    return {
        **params,
        f"{NOISY}_kernel": fresh,
        f"{NOISY}_bias": jnp.zeros_like(params[f"{NOISY}_bias"]),
    }
