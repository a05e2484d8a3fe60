"""PyTorch twins of the zoo's classifiers, with the original code's state-dict key names.

Written from the architecture descriptions of zju-vipa/Fast-Datafree
(``datafree/models/classifiers/{resnet,resnet_tiny,wresnet,vgg}.py``): same layers, same module
names, same forward pass. They are what `torch_import` converts from (its tests convert a twin's
state dict and compare the forward passes) and the PyTorch side of scripts/bench_vs_torch.py.
Needs the `torch` extra: imported only by those tests and that script, never by the library.
"""

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch convention)
from torch import nn

from fastdfkd_jax.models import torch_twins_imagenet


def _conv3x3(cin, cout, stride=1, bias=False):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class ResNetBlock(nn.Module):
    """The original's ResNet basic block: two 3x3 convolutions, a 1x1 shortcut on a new shape."""

    def __init__(self, cin, cout, stride, shortcut_name):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut_name = shortcut_name
        proj = nn.Sequential()
        if stride != 1 or cin != cout:
            proj = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        # resnet.py always registers `shortcut` (empty when identity); resnet_tiny.py registers
        # `downsample` only when projecting. Neither holds parameters when empty.
        setattr(self, shortcut_name, proj)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + getattr(self, self.shortcut_name)(x))


class TorchResNet(nn.Module):
    """resnet.py's CIFAR ResNet (ResNet-18: (2, 2, 2, 2), ResNet-34: (3, 4, 6, 3))."""

    def __init__(self, stage_sizes, num_classes, in_channels=3, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, (n, w) in enumerate(zip(stage_sizes, widths, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(ResNetBlock(cin, w, 2 if i > 0 and j == 0 else 1, "shortcut"))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(stage_sizes)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            out = getattr(self, f"layer{i + 1}")(out)
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchResNetTiny(nn.Module):
    """resnet_tiny.py's ResNet of depth 6n + 2 (post-activation, `downsample` projections)."""

    def __init__(self, depth, num_classes, in_channels=3, widths=(16, 16, 32, 64)):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, w in enumerate(widths[1:]):
            blocks = []
            for j in range(n):
                blocks.append(ResNetBlock(cin, w, 2 if i > 0 and j == 0 else 1, "downsample"))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBlock(nn.Module):
    """The original's wide-ResNet block (pre-activation BN-ReLU-conv, twice)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.equal = cin == cout
        if not self.equal:
            self.convShortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.equal else self.convShortcut(act))


class WideStage(nn.Module):
    """A wide-ResNet stage: `n` blocks, the first with `stride`."""

    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(
            *[WideBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
        )

    def forward(self, x):
        return self.layer(x)


class TorchWideResNet(nn.Module):
    """wresnet.py's pre-activation WRN-depth-k."""

    def __init__(self, depth, widen_factor, num_classes, in_channels=3):
        super().__init__()
        n = (depth - 4) // 6
        w = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = _conv3x3(in_channels, w[0])
        self.block1 = WideStage(n, w[0], w[1], 1)
        self.block2 = WideStage(n, w[1], w[2], 2)
        self.block3 = WideStage(n, w[2], w[3], 2)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchVGG(nn.Module):
    """vgg.py's CIFAR VGG-BN: blocks of (conv, bn, relu) without the block's last relu."""

    def __init__(self, cfg, num_classes, in_channels=3):
        super().__init__()
        cin = in_channels
        for i, widths in enumerate(cfg):
            mods = []
            for w in widths:
                mods += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            setattr(self, f"block{i}", nn.Sequential(*mods[:-1]))
        self.num_blocks = len(cfg)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        h = x.shape[2]
        for i in range(self.num_blocks):
            x = F.relu(getattr(self, f"block{i}")(x))
            if i < 3 or (i == 3 and h == 64):
                x = F.max_pool2d(x, 2)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class TorchSmallCNN(nn.Module):
    """Twin of fastdfkd_jax.models.SmallCNN: stages of (conv, bn, relu), max-pool between."""

    def __init__(self, stages, num_classes, in_channels=1):
        super().__init__()
        cin = in_channels
        for i, widths in enumerate(stages):
            mods = []
            for w in widths:
                mods += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            setattr(self, f"stage{i}", nn.Sequential(*mods))
        self.num_stages = len(stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        for i in range(self.num_stages):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = getattr(self, f"stage{i}")(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build(arch, num_classes, in_channels=3):
    """The PyTorch twin of the zoo classifier `arch`."""
    from fastdfkd_jax.models import small_cnn, vgg

    wrn = {"wrn16_1": (16, 1), "wrn16_2": (16, 2), "wrn40_1": (40, 1), "wrn40_2": (40, 2)}
    wrn["wrn10_1"] = (10, 1)
    tiny = {"resnet8": 8, "resnet20": 20, "fmnist_resnet8": 8}
    cnn = {
        "digits_cnn_teacher": small_cnn.DIGITS_TEACHER_STAGES,
        "digits_cnn_small": small_cnn.DIGITS_SMALL_STAGES,
        "digits_cnn_tiny": small_cnn.DIGITS_TINY_STAGES,
        "fmnist_cnn_teacher": small_cnn.FMNIST_TEACHER_STAGES,
        "fmnist_cnn_medium": small_cnn.FMNIST_MEDIUM_STAGES,
        "fmnist_cnn_small": small_cnn.FMNIST_SMALL_STAGES,
        "fmnist_cnn_tiny": small_cnn.FMNIST_TINY_STAGES,
    }
    if arch == "resnet18":
        return TorchResNet((2, 2, 2, 2), num_classes, in_channels)
    if arch == "resnet34":
        return TorchResNet((3, 4, 6, 3), num_classes, in_channels)
    if arch in wrn:
        return TorchWideResNet(*wrn[arch], num_classes, in_channels)
    if arch in tiny:
        return TorchResNetTiny(tiny[arch], num_classes, in_channels)
    if arch == "vgg11_bn":
        return TorchVGG(vgg.VGG11_CFG, num_classes, in_channels)
    if arch in cnn:
        return TorchSmallCNN(cnn[arch], num_classes, in_channels)
    if arch in torch_twins_imagenet.ARCHS:
        return torch_twins_imagenet.build(arch, num_classes)
    raise ValueError(f"No torch twin for {arch}")


def randomize_(net, generator):
    """Fill every parameter and BN buffer with random values (running_var positive)."""
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.ndim == 1 and name.endswith("weight"):
                # BN scales near 1 keep deep random networks at a sane activation scale.
                tensor.copy_(1.0 + 0.2 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim == 1:
                # BN shifts, biases and running means.
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    return net
