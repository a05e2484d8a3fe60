"""Plain-PyTorch twins of the ImageNet and segmentation zoo, with the references' state-dict keys.

Written from the architecture descriptions of torchvision (``models/resnet.py``,
``models/mobilenetv2.py``, ``models/segmentation/deeplabv3.py`` and ``fcn.py``) and of the
original FastDFKD code (zju-vipa/Fast-Datafree: ``datafree/models/deeplab`` and the
``DeepGenerator`` of ``datafree/models/generator.py``), because torchvision does not import beside
the pinned torch here. Same layers, module names and forward passes; needs the `torch` extra and
is imported only by the tests of `torch_import` and by `torch_twins`.
"""

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch convention)
from torch import nn

# --- torchvision ResNet -----------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block."""

    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        assert dilation == 1
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block (expansion 4)."""

    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class TorchvisionResNet(nn.Module):
    """torchvision.models.ResNet (fc kept; DeepLab drops it with `with_fc=False`)."""

    def __init__(self, block, layers, num_classes=1000, dilate=(False, False, False), with_fc=True):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.with_fc = with_fc
        if with_fc:
            self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if not self.with_fc:
            return x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- MobileNetV2: torchvision's and the original's DeepLab backbone ---------------------------

SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
           [6, 160, 3, 2], [6, 320, 1, 1]]  # fmt: skip


class ConvBNReLU(nn.Sequential):
    """torchvision's MobileNetV2 conv -> BN -> ReLU6 unit."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1, dilation=1, padding=None):
        if padding is None:
            padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )  # fmt: skip


class InvertedResidual(nn.Module):
    """torchvision's block (`datafree=False`) or the original DeepLab backbone's (`True`)."""

    def __init__(self, cin, cout, stride, expand_ratio, dilation=1, datafree=False):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        self.datafree, self.pad = datafree, dilation
        dw_padding = 0 if datafree else None
        mods = []
        if expand_ratio != 1:
            mods.append(ConvBNReLU(cin, hidden, 1, padding=0))
        mods += [
            ConvBNReLU(hidden, hidden, 3, stride, hidden, dilation, dw_padding),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*mods)

    def forward(self, x):
        inp = F.pad(x, (self.pad,) * 4) if self.datafree else x
        out = self.conv(inp)
        return x + out if self.use_res_connect else out


class TorchMobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2 (`datafree=False`, output stride 32), or the original's
    DeepLab backbone (`datafree=True`, unpadded stem, dilation beyond `output_stride`).
    """

    def __init__(self, num_classes=1000, output_stride=32, datafree=False):
        super().__init__()
        features = [ConvBNReLU(3, 32, 3, 2, padding=0 if datafree else None)]
        cin, current, dilation = 32, 2, 1
        for t, c, n, s in SETTING:
            previous = dilation
            if current == output_stride:
                stride, dilation = 1, dilation * s
            else:
                stride, current = s, current * s
            for i in range(n):
                features.append(
                    InvertedResidual(cin, c, stride if i == 0 else 1, t,
                                     previous if i == 0 else dilation, datafree)
                )  # fmt: skip
                cin = c
        features.append(ConvBNReLU(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DatafreeMobileNetBackbone(nn.Module):
    """The original's `_segm_mobilenet` renaming: features[0:4] and features[4:-1]."""

    def __init__(self, output_stride=8):
        super().__init__()
        net = TorchMobileNetV2(output_stride=output_stride, datafree=True)
        self.low_level_features = net.features[0:4]
        self.high_level_features = net.features[4:-1]

    def forward(self, x):
        return self.high_level_features(self.low_level_features(x))


# --- DeepLabV3 ------------------------------------------------------------------------------------


class ASPPConv(nn.Sequential):
    """A DeepLabV3 ASPP branch: a dilated 3x3 conv -> BN -> ReLU."""

    def __init__(self, cin, cout, rate):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=rate, dilation=rate, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """The DeepLabV3 ASPP image-pooling branch."""

    def __init__(self, cin, cout):
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(),
        )  # fmt: skip

    def forward(self, x):
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """DeepLabV3's atrous spatial pyramid pooling."""

    def __init__(self, cin, rates, cout=256):
        super().__init__()
        mods = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())]
        mods += [ASPPConv(cin, cout, r) for r in rates] + [ASPPPooling(cin, cout)]
        self.convs = nn.ModuleList(mods)
        self.project = nn.Sequential(
            nn.Conv2d(len(mods) * cout, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Dropout(0.5),
        )  # fmt: skip

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """DeepLabV3's head: ASPP -> 3x3 conv -> BN -> ReLU -> 1x1 classifier."""

    def __init__(self, cin, num_classes, rates=(12, 24, 36)):
        super().__init__(
            ASPP(cin, rates), nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256),
            nn.ReLU(), nn.Conv2d(256, num_classes, 1),
        )  # fmt: skip


class NestedDeepLabHead(nn.Module):
    """The original code's DeepLabHead: the same Sequential one level deeper (`classifier.*`)."""

    def __init__(self, cin, num_classes, rates=(12, 24, 36)):
        super().__init__()
        self.classifier = DeepLabHead(cin, num_classes, rates)

    def forward(self, x):
        return self.classifier(x)


class FCNHead(nn.Sequential):
    """torchvision's auxiliary head (only for counting torchvision's published parameters)."""

    def __init__(self, cin, num_classes):
        mid = cin // 4
        super().__init__(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Dropout(0.1), nn.Conv2d(mid, num_classes, 1),
        )  # fmt: skip


class TorchDeepLabV3(nn.Module):
    """DeepLabV3: backbone features -> head, upsampled to the input size."""

    def __init__(self, backbone, classifier, aux_classifier=None):
        super().__init__()
        self.backbone, self.classifier = backbone, classifier
        if aux_classifier is not None:
            self.aux_classifier = aux_classifier

    def forward(self, x):
        out = self.classifier(self.backbone(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplabv3_resnet50(num_classes, nested=False):
    """Torchvision's deeplabv3_resnet50 without aux (`nested`: the original code's key names)."""
    backbone = TorchvisionResNet(
        Bottleneck, (3, 4, 6, 3), dilate=(False, True, True), with_fc=False
    )
    head = (NestedDeepLabHead if nested else DeepLabHead)(2048, num_classes)
    return TorchDeepLabV3(backbone, head)


def deeplabv3_mobilenet(num_classes):
    """The original code's deeplabv3_mobilenet (output stride 8)."""
    return TorchDeepLabV3(DatafreeMobileNetBackbone(8), NestedDeepLabHead(320, num_classes))


# --- The original's ImageNet generator ------------------------------------------------------------


class TorchDeepGenerator(nn.Module):
    """datafree/models/generator.py's DeepGenerator (without its unused `l1`)."""

    def __init__(self, nz=256, ngf=64, nc=3):
        super().__init__()
        mods = [nn.Conv2d(nz, 2 * ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ngf),
                nn.LeakyReLU(0.2)]  # fmt: skip
        for cin, cout in ((2 * ngf, 2 * ngf), (2 * ngf, ngf), (ngf, ngf), (ngf, ngf)):
            mods += [nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                     nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]  # fmt: skip
        mods += [nn.Conv2d(ngf, nc, 3, 1, 1), nn.Sigmoid()]
        self.conv_blocks = nn.Sequential(*mods)

    def forward(self, z):
        return self.conv_blocks(z)


def build(arch, num_classes):
    """The PyTorch twin of an ImageNet or segmentation zoo model (3 input channels)."""
    if arch == "resnet18_imagenet":
        return TorchvisionResNet(BasicBlock, (2, 2, 2, 2), num_classes)
    if arch == "resnet34_imagenet":
        return TorchvisionResNet(BasicBlock, (3, 4, 6, 3), num_classes)
    if arch == "resnet50_imagenet":
        return TorchvisionResNet(Bottleneck, (3, 4, 6, 3), num_classes)
    if arch == "mobilenetv2_imagenet":
        return TorchMobileNetV2(num_classes)
    if arch == "deeplabv3_resnet50":
        return deeplabv3_resnet50(num_classes)
    if arch == "deeplabv3_mobilenet":
        return deeplabv3_mobilenet(num_classes)
    raise ValueError(f"No torch twin for {arch}")


ARCHS = (
    "resnet18_imagenet",
    "resnet34_imagenet",
    "resnet50_imagenet",
    "mobilenetv2_imagenet",
    "deeplabv3_resnet50",
    "deeplabv3_mobilenet",
)
