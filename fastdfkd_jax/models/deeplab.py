"""DeepLabV3 for semantic segmentation: a dilated backbone, the ASPP head, bilinear upsampling.

The layout is torchvision's ``torchvision.models.segmentation.deeplabv3`` (``backbone`` ->
``classifier = DeepLabHead``: ASPP(1x1, three 3x3 atrous, image pooling; project 1x1) -> 3x3 conv
-> BN -> ReLU -> 1x1 conv to the classes -> ``F.interpolate(bilinear, align_corners=False)`` to the
input size), which the original FastDFKD code's ``datafree/models/deeplab`` (taken from
VainF/DeepLabV3Plus-Pytorch) shares; its state dicts differ only by nesting the head one level
deeper (``classifier.classifier.*``), which the PyTorch import accepts too. Backbones:

- ``resnet50``: torchvision's ResNet-50 with layers 3 and 4 dilated (output stride 8), as
  ``deeplabv3_resnet50`` in torchvision and in the original code.
- ``mobilenetv2``: the original code's ``deeplabv3_mobilenet`` (torchvision has no DeepLab with
  MobileNetV2): its MobileNetV2 with the ``'datafree'`` padding, dilated to output stride 8, its
  last 1x1 convolution dropped (320 feature channels).

Atrous rates are (12, 24, 36) at output stride 8 and (6, 12, 18) at 16, the original's choice.
torchvision's auxiliary FCN head (a training-only loss term) and the ASPP dropout are left out; in
eval mode the outputs equal the references'. Initialization follows the original's
``_init_weight`` (He normal, fan-in) for the head.

Input: normalized images ``[N, H, W, C]``; output: logits ``[N, H, W, num_classes]``.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers
from fastdfkd_jax.models.mobilenetv2 import MobileNetV2
from fastdfkd_jax.models.resnet_imagenet import ImageNetResNet

# Width of every ASPP branch and of the head (both references).
ASPP_WIDTH = 256
# Atrous rates of the three 3x3 ASPP branches, per output stride (the original's _segm_* rule).
ATROUS_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}
# ResNet stages 2, 3, 4 that trade their stride for dilation, per output stride.
RESNET_DILATION = {8: (False, True, True), 16: (False, False, True)}
RESNET50_STAGES = (3, 4, 6, 3)
BACKBONES = ("resnet50", "mobilenetv2")
# The original's _init_weight: kaiming_normal_ (fan-in, gain sqrt(2)).
head_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv_bn_relu(
    features: int, kernel_size: int = 1, dilation: int = 1, *, dtype: Any, name: str
) -> layers.ConvBNAct:
    """Conv (no bias, the head's initialization) -> BN -> ReLU, children ``conv`` and ``bn``."""
    return layers.ConvBNAct(
        features, kernel_size, dilation=dilation, kernel_init=head_init, dtype=dtype, name=name
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: five parallel branches, concatenated, projected to 256.

    Branches ``convs_0`` (1x1), ``convs_1..3`` (3x3 with the atrous rates) and ``pooling``
    (global average -> 1x1 -> BN -> ReLU, broadcast back to the feature map's size: the
    references' bilinear upsampling of a 1x1 map), then ``project`` (1x1).

    Attributes:
      rates: three atrous rates.
      features: width of each branch and of the output.
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    rates: Sequence[int]
    features: int = ASPP_WIDTH
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H, W, features]``."""
        dt = self.dtype
        branches = [conv_bn_relu(self.features, 1, dtype=dt, name="convs_0")(x, train=train)]
        for i, rate in enumerate(self.rates, start=1):
            branch = conv_bn_relu(self.features, 3, rate, dtype=dt, name=f"convs_{i}")
            branches.append(branch(x, train=train))
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        pooled = conv_bn_relu(self.features, 1, dtype=dt, name="pooling")(pooled, train=train)
        branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))
        return conv_bn_relu(self.features, 1, dtype=dt, name="project")(
            jnp.concatenate(branches, axis=-1), train=train
        )


class DeepLabHead(nn.Module):
    """ASPP -> 3x3 conv -> BN -> ReLU -> 1x1 conv (with bias) to the classes.

    Children ``aspp``, ``conv``, ``bn``, ``out`` (PyTorch ``classifier.0``, ``.1``, ``.2``,
    ``.4``).

    Attributes:
      num_classes: output channels.
      rates: the ASPP's atrous rates.
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    num_classes: int
    rates: Sequence[int]
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, h, w, C] -> [N, h, w, num_classes]``."""
        dt = self.dtype
        x = ASPP(self.rates, dtype=dt, name="aspp")(x, train=train)
        x = layers.conv(ASPP_WIDTH, 3, kernel_init=head_init, dtype=dt, name="conv")(x)
        x = nn.relu(layers.batch_norm(train=train, name="bn", dtype=dt)(x))
        out = layers.conv(
            self.num_classes, 1, use_bias=True, kernel_init=head_init, dtype=dt, name="out"
        )
        return out(x)


def _backbone(name: str, output_stride: int, dtype: Any) -> nn.Module:
    """The feature extractor ``backbone`` for a DeepLabV3 (see the module docstring)."""
    if name == "resnet50":
        return ImageNetResNet(
            stage_sizes=RESNET50_STAGES,
            bottleneck=True,
            replace_stride_with_dilation=RESNET_DILATION[output_stride],
            include_head=False,
            dtype=dtype,
            name="backbone",
        )
    return MobileNetV2(
        output_stride=output_stride,
        padding="datafree",
        include_head=False,
        dtype=dtype,
        name="backbone",
    )


class DeepLabV3(nn.Module):
    """DeepLabV3: ``backbone`` -> ``classifier`` (DeepLabHead) -> bilinear resize to the input.

    Attributes:
      num_classes: number of classes (13 for NYUv2).
      backbone: ``'resnet50'`` or ``'mobilenetv2'``.
      output_stride: 8 or 16, the backbone's total stride.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 21
    backbone: str = "resnet50"
    output_stride: int = 8
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, H, W, num_classes]``."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.output_stride not in ATROUS_RATES:
            raise ValueError(
                f"output_stride must be one of {sorted(ATROUS_RATES)}, got {self.output_stride}"
            )
        features = _backbone(self.backbone, self.output_stride, self.dtype)(x, train=train)
        head = DeepLabHead(
            self.num_classes, ATROUS_RATES[self.output_stride], self.dtype, name="classifier"
        )
        logits = head(features, train=train)
        return layers.resize_bilinear(logits, x.shape[1:3])
