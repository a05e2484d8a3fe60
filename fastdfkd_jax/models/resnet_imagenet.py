"""torchvision's ImageNet ResNets (ResNet-18/34/50): 7x7/2 stem, 3x3/2 max-pool, four stages.

Same layers, order and initialization as ``torchvision.models.resnet`` (BasicBlock for 18/34; for
50 the "ResNet v1.5" Bottleneck, whose stride sits on the 3x3 convolution), so torchvision's
ImageNet state dicts import exactly (see :mod:`fastdfkd_jax.models.torch_import`). Stages may
replace their stride by dilation (``replace_stride_with_dilation``, torchvision's argument), which
DeepLabV3 uses for an output stride of 8; ``include_head=False`` returns the last feature map
instead of logits (the DeepLab backbone).

Submodules are named ``conv1``, ``bn1``, ``layer{stage}_{block}`` and ``fc`` (PyTorch:
``layer{stage}.{block}``); a block's projection shortcut is ``shortcut_conv``/``shortcut_bn``
(PyTorch: ``downsample.0``/``downsample.1``).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers
from fastdfkd_jax.models.resnet import BasicBlock

# torchvision's stem and stage widths, and the Bottleneck's output expansion.
STEM_WIDTH = 64
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
STEM_KERNEL = 7
STEM_STRIDE = 2


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1 -> 3x3 (stride, dilation) -> 1x1 (x4), BN after each.

    ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`` where the shortcut
    is a 1x1 conv + BN (with the block's stride) when the shape changes.

    Attributes:
      features: width of the 3x3 convolution; the block outputs ``4 * features`` channels.
      stride: stride of the 3x3 convolution and of the projection shortcut.
      dilation: dilation (and padding) of the 3x3 convolution.
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    features: int
    stride: int = 1
    dilation: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H / stride, W / stride, 4 * features]``."""
        out_features = self.features * BOTTLENECK_EXPANSION
        dt = self.dtype
        out = layers.conv(self.features, 1, dtype=dt, name="conv1")(x)
        out = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(out))
        out = layers.conv(
            self.features, 3, stride=self.stride, dilation=self.dilation, dtype=dt, name="conv2"
        )(out)
        out = nn.relu(layers.batch_norm(train=train, name="bn2", dtype=dt)(out))
        out = layers.conv(out_features, 1, dtype=dt, name="conv3")(out)
        out = layers.batch_norm(train=train, name="bn3", dtype=dt)(out)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != out_features:
            shortcut = layers.conv(
                out_features, 1, stride=self.stride, dtype=dt, name="shortcut_conv"
            )(x)
            shortcut = layers.batch_norm(train=train, name="shortcut_bn", dtype=dt)(shortcut)
        return nn.relu(out + shortcut)


class ImageNetResNet(nn.Module):
    """torchvision's ResNet: conv7x7/2 -> BN -> ReLU -> maxpool3x3/2 -> 4 stages -> GAP -> fc.

    Attributes:
      num_classes: number of logits (unused when ``include_head`` is False).
      stage_sizes: blocks per stage: (2, 2, 2, 2) ResNet-18, (3, 4, 6, 3) ResNet-34 and -50.
      bottleneck: Bottleneck blocks (ResNet-50) instead of BasicBlocks (ResNet-18/34).
      replace_stride_with_dilation: for stages 2, 3, 4, replace the stage's stride 2 by dilation
        (torchvision's argument; DeepLabV3's output stride 8 is ``(False, True, True)``). Only
        Bottleneck networks support it, as in torchvision.
      include_head: end with GAP + fc (logits); False returns the last stage's feature map.
      features_only: return the head's input ``[N, D]`` (the globally pooled features) instead
        of the logits; the other parameters keep their names, the head's are not created.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32.

    """

    num_classes: int = 1000
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False
    replace_stride_with_dilation: Sequence[bool] = (False, False, False)
    include_head: bool = True
    features_only: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """Map normalized images ``[N, H, W, C]`` to logits ``[N, num_classes]``.

        Without the head: features ``[N, H / s, W / s, C_out]`` with ``s = 32`` divided by 2 per
        dilated stage, ``C_out`` 512 (BasicBlock) or 2048 (Bottleneck).
        """
        dilate = tuple(self.replace_stride_with_dilation)
        if len(dilate) != len(STAGE_WIDTHS) - 1:
            raise ValueError(
                f"replace_stride_with_dilation needs {len(STAGE_WIDTHS) - 1} entries, got {dilate}"
            )
        if any(dilate) and not self.bottleneck:
            raise ValueError("Dilation needs Bottleneck blocks (as in torchvision)")
        dt = self.dtype
        x = layers.conv(STEM_WIDTH, STEM_KERNEL, stride=STEM_STRIDE, dtype=dt, name="conv1")(x)
        x = nn.relu(layers.batch_norm(train=train, name="bn1", dtype=dt)(x))
        x = layers.max_pool_3x3_stride2(x)
        dilation = 1
        for i, (blocks, width) in enumerate(zip(self.stage_sizes, STAGE_WIDTHS, strict=True)):
            stride = 1 if i == 0 else 2
            # torchvision's _make_layer: the first block keeps the previous dilation, the others
            # use the stage's (multiplied by the stride it replaces).
            previous_dilation = dilation
            if i > 0 and dilate[i - 1]:
                dilation *= stride
                stride = 1
            for j in range(blocks):
                name = f"layer{i + 1}_{j}"
                block_stride = stride if j == 0 else 1
                if self.bottleneck:
                    block_dilation = previous_dilation if j == 0 else dilation
                    x = Bottleneck(width, block_stride, block_dilation, dt, name=name)(
                        x, train=train
                    )
                else:
                    x = BasicBlock(width, block_stride, layers.kaiming_fan_out, dt, name=name)(
                        x, train=train
                    )
        if not self.include_head:
            return x
        x = layers.global_avg_pool(x)
        if self.features_only:
            return x
        return layers.dense_torch_default(self.num_classes, dtype=dt, name="fc")(x)
