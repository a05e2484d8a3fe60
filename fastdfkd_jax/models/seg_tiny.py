"""A DeepLabV3 of a few thousand parameters, for smoke runs and tests of the segmentation path.

The same parts as :class:`fastdfkd_jax.models.deeplab.DeepLabV3` (a dilated backbone, the ASPP
head with its image-pooling branch, a 3x3 conv-BN-ReLU and a 1x1 classifier, bilinear upsampling
to the input's size), with a three-layer backbone of output stride 4 and narrow branches: what
``resnet8`` is to the CIFAR ResNets. Not a model to train for results.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers
from fastdfkd_jax.models.deeplab import ASPP, conv_bn_relu, head_init

# Backbone: (stride, dilation) of its three 3x3 conv-BN-ReLU layers (output stride 4).
TINY_BACKBONE = ((2, 1), (2, 1), (1, 2))
# Atrous rates of the small ASPP (the dilated backbone already widens the field of view).
TINY_RATES = (1, 2, 3)


class TinyDeepLab(nn.Module):
    """Normalized images ``[N, H, W, C]`` -> logits ``[N, H, W, num_classes]``.

    Attributes:
      num_classes: number of classes.
      width: channels of every layer and ASPP branch.
      rates: the ASPP's three atrous rates.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 13
    width: int = 8
    rates: Sequence[int] = TINY_RATES
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, H, W, num_classes]``."""
        size = x.shape[1:3]
        for i, (stride, dilation) in enumerate(TINY_BACKBONE):
            x = layers.ConvBNAct(
                self.width, 3, stride=stride, dilation=dilation, kernel_init=head_init,
                dtype=self.dtype, name=f"backbone_{i}",
            )(x, train=train)  # fmt: skip
        x = ASPP(self.rates, features=self.width, dtype=self.dtype, name="aspp")(x, train=train)
        x = conv_bn_relu(self.width, 3, dtype=self.dtype, name="head")(x, train=train)
        x = layers.conv(
            self.num_classes, 1, use_bias=True, kernel_init=head_init, dtype=self.dtype, name="out"
        )(x)
        return layers.resize_bilinear(x, size)
