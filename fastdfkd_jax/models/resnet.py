"""CIFAR ResNets (3x3 stem, no max-pool), as in the original ``resnet.py`` and ``resnet_tiny.py``.

``ResNet`` is the ResNet-18/34 family (widths 64-128-256-512, four stages); ``ResNetTiny`` is the
``resnet8``/``resnet20`` family (depth 6n + 2, three stages, widths 16-16-32-64 by default). Both
use post-activation BasicBlocks with a 1x1 conv + BN projection shortcut when the shape changes,
and end with a global average pool, which equals the original's ``AvgPool2d(8)`` on 32x32 inputs
and also works on 28x28 or 8x8 inputs. Submodule names mirror the PyTorch state-dict keys.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers


class BasicBlock(nn.Module):
    """Post-activation residual block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    Attributes:
      features: output channels.
      stride: stride of the first convolution and of the projection shortcut.
      kernel_init: convolution weight initializer.
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    features: int
    stride: int = 1
    kernel_init: nn.initializers.Initializer = layers.kaiming_fan_out
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H / stride, W / stride, features]``."""
        init, dt = self.kernel_init, self.dtype
        out = layers.conv(
            self.features, 3, stride=self.stride, kernel_init=init, dtype=dt, name="conv1"
        )(x)
        out = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(out))
        out = layers.conv(self.features, 3, kernel_init=init, dtype=dt, name="conv2")(out)
        out = layers.batch_norm(train=train, name="bn2", dtype=dt)(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = layers.conv(
                self.features,
                1,
                stride=self.stride,
                kernel_init=init,
                dtype=dt,
                name="shortcut_conv",
            )(x)
            shortcut = layers.batch_norm(train=train, name="shortcut_bn", dtype=dt)(shortcut)
        return nn.relu(out + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet-18/34: conv3x3(64) -> BN -> ReLU -> 4 stages of BasicBlocks -> GAP -> linear.

    Blocks are named ``layer{stage}_{index}`` (PyTorch: ``layer{stage}.{index}``).

    Attributes:
      num_classes: number of logits.
      stage_sizes: blocks per stage ((2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34).
      widths: channels per stage.
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 10
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``."""
        # The original leaves PyTorch's default initialization on this family.
        init, dt = layers.torch_default, self.dtype
        x = layers.conv(self.widths[0], 3, kernel_init=init, dtype=dt, name="conv1")(x)
        x = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(x))
        for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = BasicBlock(width, stride, init, dt, name=f"layer{i + 1}_{j}")(x, train=train)
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return layers.dense_torch_default(self.num_classes, dtype=dt, name="linear")(x)


class ResNetTiny(nn.Module):
    """CIFAR ResNet of depth 6n + 2 (resnet8, resnet20, ...) with three stages of n blocks.

    conv3x3(widths[0]) -> BN -> ReLU -> stages of widths[1:] (strides 1, 2, 2) -> GAP -> linear.

    Attributes:
      num_classes: number of logits.
      depth: 6n + 2 (8, 14, 20, 32, ...).
      widths: stem width then the three stage widths.
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 10
    depth: int = 8
    widths: Sequence[int] = (16, 16, 32, 64)
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``."""
        if (self.depth - 2) % 6:
            raise ValueError(f"ResNetTiny depth must be 6n + 2, got {self.depth}")
        n = (self.depth - 2) // 6
        dt = self.dtype
        x = layers.conv(self.widths[0], 3, dtype=dt, name="conv1")(x)
        x = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(x))
        for i, width in enumerate(self.widths[1:]):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                x = BasicBlock(width, stride, dtype=dt, name=f"layer{i + 1}_{j}")(x, train=train)
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return layers.dense_torch_default(self.num_classes, dtype=dt, name="fc")(x)
