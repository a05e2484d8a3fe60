"""Small VGG-style CNNs for the CPU data sets (8x8x1 digits, 28x28x1 Fashion-MNIST).

They are sized for JAX on a couple of CPU cores: the expensive convolutions run at reduced
resolution, every convolution is followed by BatchNorm (the FastDFKD BN-statistics loss needs BN
layers in the teacher) and the head is a global average pool plus one linear layer, so the same
network takes any input size and any number of channels.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers


class SmallCNN(nn.Module):
    """Stages of 3x3 conv -> BN -> ReLU, a 2x2 max-pool between stages, then GAP -> linear.

    Submodules are named ``stage{i}_conv{j}`` / ``stage{i}_bn{j}`` and ``head``.

    Attributes:
      num_classes: number of output logits.
      stages: conv widths per stage, e.g. ``((32, 32), (64, 64), (128,))``; the spatial size halves
        between consecutive stages.
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 10
    stages: Sequence[Sequence[int]] = ((32, 32), (64, 64), (128,))
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``."""
        for i, widths in enumerate(self.stages):
            if i > 0:
                x = layers.max_pool_2x2(x)
            for j, width in enumerate(widths):
                x = layers.conv(width, 3, dtype=self.dtype, name=f"stage{i}_conv{j}")(x)
                x = layers.batch_norm(train=train, name=f"stage{i}_bn{j}", dtype=self.dtype)(x)
                x = nn.relu(x)
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


# Digits (8x8x1): 8 -> 4 -> 2 pixels over the stages.
DIGITS_TEACHER_STAGES = ((32, 32), (64, 64), (128,))
DIGITS_SMALL_STAGES = ((16,), (32,), (64,))
DIGITS_TINY_STAGES = ((8,), (16,))
# Fashion-MNIST (28x28x1): 28 -> 14 -> 7 pixels over the stages. A single conv at full resolution
# (the costly one on CPU: about 2x the step time of a second 28x28 conv) keeps the teacher near
# 470 img/s per training step at batch 128 on 2 cores.
FMNIST_TEACHER_STAGES = ((32,), (64, 64), (128, 128))
FMNIST_SMALL_STAGES = ((16,), (32,), (64,))
# The widths of the teacher's first conv of each stage: a third of its parameters, ~1.8x the KD
# step time of fmnist_cnn_small on 2 CPU cores (0.16 s against 0.09 s at batch 128).
FMNIST_MEDIUM_STAGES = ((32,), (64,), (128,))
FMNIST_TINY_STAGES = ((8,), (16,), (32,))
