"""MobileNetV2 as torchvision builds it, and as the DFKD literature's DeepLab backbone builds it.

``padding='torchvision'`` is ``torchvision.models.mobilenet_v2`` (3,504,872 parameters at 1000
classes), so torchvision's ImageNet state dicts import exactly. ``padding='datafree'`` is the
backbone of ``deeplabv3_mobilenet`` in the original FastDFKD code (zju-vipa/Fast-Datafree,
``datafree/models/deeplab/backbone/mobilenetv2.py``, taken from VainF/DeepLabV3Plus-Pytorch): the
same layers and parameters, but the stem convolution is unpadded and each inverted residual block
zero-pads its *input* (by the depthwise convolution's dilation) before the expansion convolution,
whose BN and ReLU6 then turn the padded border into non-zero values; the depthwise convolution
itself is unpadded. Both support an ``output_stride`` below 32 by replacing strides with dilation
from the stage where the stride would exceed it (the original's rule).

Submodules mirror the PyTorch ``nn.Sequential`` indices: ``features_{i}`` is ``features.{i}``;
a ConvBNReLU6 has ``conv`` and ``bn`` (``.0`` and ``.1``); an inverted residual block numbers its
parts ``conv_{k}`` as PyTorch's ``conv.{k}`` (ConvBNReLU6 units, then the projection conv and BN).
The classifier's Dropout(0.2) is left out: it is the identity in eval mode, and the common training
interface passes no dropout RNG.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers

# torchvision's (expansion t, channels c, blocks n, stride s) per stage, stem and last widths.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_WIDTH = 32
LAST_WIDTH = 1280
STEM_STRIDE = 2
# Stride of the network without dilation (the stem and four stride-2 stages).
FULL_STRIDE = 32
PADDINGS = ("torchvision", "datafree")
# torchvision initializes the classifier with normal(0, 0.01) and zero bias.
CLASSIFIER_INIT_STD = 0.01


def conv_bn_relu6(features: int, kernel_size: int = 3, **kwargs) -> layers.ConvBNAct:
    """PyTorch's MobileNetV2 ``ConvBNReLU``: conv (no bias) -> BN -> ReLU6 (``.0`` conv, ``.1`` bn).

    ``kwargs``: ``stride``, ``dilation``, ``groups``, ``padding``, ``name`` of
    :class:`~fastdfkd_jax.models.layers.ConvBNAct`.
    """
    return layers.ConvBNAct(features, kernel_size, activation=nn.relu6, **kwargs)


class InvertedResidual(nn.Module):
    """Expand 1x1 (if ``expand_ratio > 1``) -> depthwise 3x3 -> project 1x1 + BN (linear).

    Adds the input when the stride is 1 and the widths agree.

    Attributes:
      features: output channels.
      stride: depthwise stride (1 or 2).
      dilation: depthwise dilation.
      expand_ratio: hidden width / input width.
      padding: ``'torchvision'`` (the depthwise conv pads) or ``'datafree'`` (the block's input
        is padded before the expansion; see the module docstring).
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    features: int
    stride: int
    dilation: int
    expand_ratio: int
    padding: str = "torchvision"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H / stride, W / stride, features]``."""
        in_features = x.shape[-1]
        hidden = round(in_features * self.expand_ratio)
        block_input = x
        depthwise_padding = None
        if self.padding == "datafree":
            # The original's fixed_padding(3, dilation): (dilation, dilation) on each side.
            pad = self.dilation
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            depthwise_padding = 0
        index = 0
        if self.expand_ratio != 1:
            x = conv_bn_relu6(hidden, 1, dtype=self.dtype, name=f"conv_{index}")(x, train=train)
            index += 1
        x = conv_bn_relu6(
            hidden,
            3,
            stride=self.stride,
            dilation=self.dilation,
            groups=hidden,
            padding=depthwise_padding,
            dtype=self.dtype,
            name=f"conv_{index}",
        )(x, train=train)
        x = layers.conv(self.features, 1, dtype=self.dtype, name=f"conv_{index + 1}")(x)
        x = layers.batch_norm(train=train, name=f"conv_{index + 2}", dtype=self.dtype)(x)
        if self.stride == 1 and in_features == self.features:
            x = block_input + x
        return x


def stage_strides_and_dilations(output_stride: int) -> list[tuple[int, int, int]]:
    """Per stage of ``INVERTED_RESIDUAL_SETTING``: (stride, first block's dilation, dilation).

    The original's rule: once the running stride reaches ``output_stride``, each later stage
    keeps stride 1 and multiplies the dilation by the stride it skips; a stage's first block uses
    the previous stage's dilation.
    """
    current, dilation, out = STEM_STRIDE, 1, []
    for *_, s in INVERTED_RESIDUAL_SETTING:
        previous = dilation
        if current == output_stride:
            stride, dilation = 1, dilation * s
        else:
            stride, current = s, current * s
        out.append((stride, previous, dilation))
    return out


class MobileNetV2(nn.Module):
    """MobileNetV2: ConvBNReLU6(32, /2) -> 17 inverted residual blocks -> ConvBNReLU6(1280, 1x1)
    -> GAP -> linear.

    Attributes:
      num_classes: number of logits (unused without the head).
      output_stride: 32 (no dilation), 16 or 8 (dilated last stages, for DeepLab).
      padding: ``'torchvision'`` or ``'datafree'`` (see the module docstring).
      include_head: end with the 1x1 conv to 1280, GAP and the classifier; False returns the last
        inverted residual block's 320-channel feature map (the DeepLab backbone, which drops the
        1x1 conv as the original does).
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 1000
    output_stride: int = FULL_STRIDE
    padding: str = "torchvision"
    include_head: bool = True
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``.

        Without the head: features ``[N, ~H / output_stride, ~W / output_stride, 320]``.
        """
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.output_stride not in (8, 16, FULL_STRIDE):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        stem_padding = 0 if self.padding == "datafree" else None
        x = conv_bn_relu6(
            STEM_WIDTH,
            3,
            stride=STEM_STRIDE,
            padding=stem_padding,
            dtype=self.dtype,
            name="features_0",
        )(x, train=train)
        index = 1
        plan = stage_strides_and_dilations(self.output_stride)
        for (t, c, n, _), (stride, first_dilation, dilation) in zip(
            INVERTED_RESIDUAL_SETTING, plan, strict=True
        ):
            for j in range(n):
                x = InvertedResidual(
                    c,
                    stride if j == 0 else 1,
                    first_dilation if j == 0 else dilation,
                    t,
                    self.padding,
                    self.dtype,
                    name=f"features_{index}",
                )(x, train=train)
                index += 1
        if not self.include_head:
            return x
        x = conv_bn_relu6(LAST_WIDTH, 1, dtype=self.dtype, name=f"features_{index}")(x, train=train)
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.normal(CLASSIFIER_INIT_STD),
            dtype=self.dtype,
            name="classifier",
        )(x)
