"""Pre-activation wide ResNets (WRN-depth-k) for CIFAR, as in the original ``wresnet.py``.

Depth 6n + 4: a 3x3 stem, three stages of n pre-activation blocks with widths 16k, 32k, 64k (strides
1, 2, 2), then BN -> ReLU -> global average pool -> linear. Submodule names mirror the PyTorch
state-dict keys (``block{stage}_{index}`` for ``block{stage}.layer.{index}``).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers

# Stem and first-stage width before widening, as in the original.
BASE_WIDTH = 16


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN, ReLU, conv3x3, BN, ReLU, [dropout], conv3x3, plus a shortcut.

    When the channel count changes, the activated input also feeds a 1x1 projection shortcut (as the
    original: the shortcut sees relu(bn1(x)), not x); otherwise the shortcut is the raw input.

    Attributes:
      features: output channels.
      stride: stride of the first convolution and the shortcut.
      dropout_rate: dropout between the convolutions (0 in the original's FastDFKD models; a
        positive rate needs a 'dropout' rng when ``train=True``).
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    features: int
    stride: int = 1
    dropout_rate: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H / stride, W / stride, features]``."""
        equal_in_out = x.shape[-1] == self.features
        dt = self.dtype
        act = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(x))
        out = layers.conv(self.features, 3, stride=self.stride, dtype=dt, name="conv1")(act)
        out = nn.relu(layers.batch_norm(train=train, name="bn2", dtype=dt)(out))
        if self.dropout_rate > 0:
            out = nn.Dropout(self.dropout_rate, deterministic=not train)(out)
        out = layers.conv(self.features, 3, dtype=dt, name="conv2")(out)
        if equal_in_out:
            shortcut = x
        else:
            shortcut = layers.conv(
                self.features, 1, stride=self.stride, padding=0, dtype=dt, name="conv_shortcut"
            )(act)
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen_factor: maps normalized images ``[N, H, W, C]`` to ``[N, num_classes]``.

    Attributes:
      num_classes: number of logits.
      depth: 6n + 4 (10, 16, 40, ...).
      widen_factor: width multiplier k.
      dropout_rate: see :class:`WideBasicBlock`.
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 10
    depth: int = 16
    widen_factor: int = 1
    dropout_rate: float = 0.0
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``."""
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {self.depth}")
        n = (self.depth - 4) // 6
        widths = [BASE_WIDTH * self.widen_factor * 2**i for i in range(3)]
        x = layers.conv(BASE_WIDTH, 3, dtype=self.dtype, name="conv1")(x)
        for i, width in enumerate(widths):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                block = WideBasicBlock(
                    width, stride, self.dropout_rate, self.dtype, name=f"block{i + 1}_{j}"
                )
                x = block(x, train=train)
        x = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=self.dtype)(x))
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return nn.Dense(
            self.num_classes,
            kernel_init=layers.torch_default,
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            name="fc",
        )(x)
