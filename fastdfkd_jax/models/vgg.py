"""VGG with BatchNorm for CIFAR, as the original ``vgg.py`` (RepDistiller's CIFAR variant).

Five blocks of conv3x3 (with bias) -> BN -> ReLU; 2x2 max-pools after blocks 0, 1 and 2 (and after
block 3 only for 64-pixel inputs, as the original does for Tiny-ImageNet), a global average pool
and one linear layer. Submodule names are ``block{i}_conv{j}``, ``block{i}_bn{j}`` and
``classifier``.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers

# Configuration "A" of the original (VGG-11): conv widths per block.
VGG11_CFG = ((64,), (128,), (256, 256), (512, 512), (512, 512))
# The original pools after block 3 only for inputs of this height (Tiny-ImageNet).
POOL3_INPUT_HEIGHT = 64


class VGG(nn.Module):
    """VGG-BN: maps normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``.

    Attributes:
      num_classes: number of logits.
      cfg: conv widths per block (five blocks).
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 10
    cfg: Sequence[Sequence[int]] = VGG11_CFG
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``."""
        height = x.shape[1]
        for i, widths in enumerate(self.cfg):
            for j, width in enumerate(widths):
                x = layers.conv(
                    width, 3, use_bias=True, dtype=self.dtype, name=f"block{i}_conv{j}"
                )(x)
                bn = layers.batch_norm(train=train, name=f"block{i}_bn{j}", dtype=self.dtype)
                x = nn.relu(bn(x))
            if i < 3 or (i == 3 and height == POOL3_INPUT_HEIGHT):
                x = layers.max_pool_2x2(x)
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.normal(stddev=0.01),
            dtype=self.dtype,
            name="classifier",
        )(x)
