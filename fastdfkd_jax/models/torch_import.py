"""Conversion of PyTorch state dicts to Flax variables (every zoo model with a PyTorch original:
all but ``generator`` and the smoke runs' ``deeplabv3_tiny``).

Sources: the original FastDFKD code's CIFAR classifiers and its ``DeepGenerator``, torchvision's
ImageNet classifiers (``resnet18/34/50``, ``mobilenet_v2``: the ``*_imagenet`` models) and DeepLabV3
(torchvision's ``deeplabv3_resnet50``, whose ``aux_classifier.*`` keys, a training-only head, are
dropped; and the original code's ``deeplabv3_resnet50``/``deeplabv3_mobilenet``, whose
``classifier.classifier.*`` keys are read as ``classifier.*``).

Pure numpy: the caller loads the ``.pth`` (see ``scripts/import_torch_teacher.py``) and passes a
dict of numpy arrays. The mapping is explicit: every Flax module path of the architecture (walked in
the Flax parameter tree built by ``jax.eval_shape``) is renamed to its PyTorch prefix by a fixed
per-family table of rules, then each tensor is transposed to Flax's layout:

- Conv2d ``weight [O, I, kH, kW]`` -> ``kernel [kH, kW, I, O]``; ``bias`` -> ``bias``;
- Linear ``weight [out, in]`` -> ``kernel [in, out]``; ``bias`` -> ``bias``;
- BatchNorm2d ``weight``/``bias`` -> params ``scale``/``bias``; ``running_mean``/``running_var`` ->
  batch_stats ``mean``/``var``; ``num_batches_tracked`` is dropped.

Any key the architecture does not have, any missing key and any shape that differs raise a
``ValueError`` naming the first such key (in the state dict's order) and the shapes.
"""

import re
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fastdfkd_jax.models import GENERATORS, MODELS, create_model
from fastdfkd_jax.models.deeplab import DeepLabV3
from fastdfkd_jax.models.generator import DeepGenerator
from fastdfkd_jax.models.mobilenetv2 import MobileNetV2
from fastdfkd_jax.models.resnet import ResNet, ResNetTiny
from fastdfkd_jax.models.resnet_imagenet import ImageNetResNet
from fastdfkd_jax.models.small_cnn import SmallCNN
from fastdfkd_jax.models.vgg import VGG
from fastdfkd_jax.models.wresnet import WideResNet

# Spatial size used to build the parameter shapes; no zoo model's parameters depend on it.
_PROBE_SIZE = 32
# BatchNorm buffers PyTorch keeps but Flax does not need.
_IGNORED_SUFFIXES = (".num_batches_tracked",)
# DeepLab: torchvision's auxiliary FCN head (training loss only; not part of our model).
_DEEPLAB_DROPPED_PREFIX = "aux_classifier."
# DeepLab: the original code nests torchvision's head Sequential one level deeper.
_DEEPLAB_KEY_ALIASES = {"classifier.classifier.": "classifier."}
# The original's deeplabv3_mobilenet splits MobileNetV2's features into features[0:4] (stride-4
# "low level" features, for DeepLabV3+) and features[4:-1]; slicing an nn.Sequential keeps the
# indices, so block i stays `.{i}` in either part.
_MOBILENET_LOW_LEVEL_BLOCKS = 4

Rule = tuple[str, Callable[[re.Match], str]]


def _imagenet_resnet_rules(prefix: str) -> list[Rule]:
    """Torchvision ResNet names (``downsample`` shortcuts, ``fc``) under ``prefix``."""
    return [
        (r"layer(\d+)_(\d+)/shortcut_conv", lambda m: f"{prefix}layer{m[1]}.{m[2]}.downsample.0"),
        (r"layer(\d+)_(\d+)/shortcut_bn", lambda m: f"{prefix}layer{m[1]}.{m[2]}.downsample.1"),
        (r"layer(\d+)_(\d+)/(\w+)", lambda m: f"{prefix}layer{m[1]}.{m[2]}.{m[3]}"),
        (r"(conv1|bn1|fc)", lambda m: f"{prefix}{m[1]}"),
    ]


def _mobilenet_rules(features: Callable[[int], str]) -> list[Rule]:
    """MobileNetV2 names; ``features(i)`` is the PyTorch prefix of Flax block ``features_{i}``."""
    unit = {"conv": "0", "bn": "1"}
    return [
        (
            r"features_(\d+)/conv_(\d+)/(conv|bn)",
            lambda m: f"{features(int(m[1]))}.conv.{m[2]}.{unit[m[3]]}",
        ),
        (r"features_(\d+)/conv_(\d+)", lambda m: f"{features(int(m[1]))}.conv.{m[2]}"),
        (r"features_(\d+)/(conv|bn)", lambda m: f"{features(int(m[1]))}.{unit[m[2]]}"),
        (r"classifier", lambda m: "classifier.1"),
    ]


def _datafree_mobilenet_features(i: int) -> str:
    """The original deeplabv3_mobilenet's name of MobileNetV2 block ``features.{i}``."""
    if i < _MOBILENET_LOW_LEVEL_BLOCKS:
        return f"backbone.low_level_features.{i}"
    return f"backbone.high_level_features.{i}"


# torchvision's DeepLabHead: classifier.0 ASPP (convs.0-3: conv, bn; convs.4: pool, conv, bn;
# project: conv, bn), classifier.1 conv, .2 bn, .3 relu, .4 conv to the classes.
_DEEPLAB_HEAD_RULES: list[Rule] = [
    (r"classifier/aspp/convs_(\d+)/conv", lambda m: f"classifier.0.convs.{m[1]}.0"),
    (r"classifier/aspp/convs_(\d+)/bn", lambda m: f"classifier.0.convs.{m[1]}.1"),
    (r"classifier/aspp/pooling/conv", lambda m: "classifier.0.convs.4.1"),
    (r"classifier/aspp/pooling/bn", lambda m: "classifier.0.convs.4.2"),
    (r"classifier/aspp/project/conv", lambda m: "classifier.0.project.0"),
    (r"classifier/aspp/project/bn", lambda m: "classifier.0.project.1"),
    (r"classifier/conv", lambda m: "classifier.1"),
    (r"classifier/bn", lambda m: "classifier.2"),
    (r"classifier/out", lambda m: "classifier.4"),
]


def _deeplab_rules(backbone: str) -> list[Rule]:
    if backbone == "resnet50":
        rules = _imagenet_resnet_rules("backbone.")
    else:
        rules = _mobilenet_rules(_datafree_mobilenet_features)
    return [(f"backbone/{pattern}", rename) for pattern, rename in rules] + _DEEPLAB_HEAD_RULES


# Per family: (regex on the '/'-joined Flax module path, function of the match -> torch prefix).
# The first rule that matches the whole path wins.
_RULES: dict[type, list[Rule]] = {
    ResNet: [
        (r"layer(\d+)_(\d+)/shortcut_conv", lambda m: f"layer{m[1]}.{m[2]}.shortcut.0"),
        (r"layer(\d+)_(\d+)/shortcut_bn", lambda m: f"layer{m[1]}.{m[2]}.shortcut.1"),
        (r"layer(\d+)_(\d+)/(\w+)", lambda m: f"layer{m[1]}.{m[2]}.{m[3]}"),
        (r"(conv1|bn1|linear)", lambda m: m[1]),
    ],
    ResNetTiny: [
        (r"layer(\d+)_(\d+)/shortcut_conv", lambda m: f"layer{m[1]}.{m[2]}.downsample.0"),
        (r"layer(\d+)_(\d+)/shortcut_bn", lambda m: f"layer{m[1]}.{m[2]}.downsample.1"),
        (r"layer(\d+)_(\d+)/(\w+)", lambda m: f"layer{m[1]}.{m[2]}.{m[3]}"),
        (r"(conv1|bn1|fc)", lambda m: m[1]),
    ],
    WideResNet: [
        (r"block(\d+)_(\d+)/conv_shortcut", lambda m: f"block{m[1]}.layer.{m[2]}.convShortcut"),
        (r"block(\d+)_(\d+)/(\w+)", lambda m: f"block{m[1]}.layer.{m[2]}.{m[3]}"),
        (r"(conv1|bn1|fc)", lambda m: m[1]),
    ],
    # The original's nn.Sequential per block holds (conv, bn, relu) triples, minus the last relu.
    VGG: [
        (r"block(\d+)_conv(\d+)", lambda m: f"block{m[1]}.{3 * int(m[2])}"),
        (r"block(\d+)_bn(\d+)", lambda m: f"block{m[1]}.{3 * int(m[2]) + 1}"),
        (r"(classifier)", lambda m: m[1]),
    ],
    # No original exists; the PyTorch twin uses one nn.Sequential of (conv, bn, relu) per stage.
    SmallCNN: [
        (r"stage(\d+)_conv(\d+)", lambda m: f"stage{m[1]}.{3 * int(m[2])}"),
        (r"stage(\d+)_bn(\d+)", lambda m: f"stage{m[1]}.{3 * int(m[2]) + 1}"),
        (r"(head)", lambda m: m[1]),
    ],
    ImageNetResNet: _imagenet_resnet_rules(""),
    MobileNetV2: _mobilenet_rules(lambda i: f"features.{i}"),
    # The original's conv_blocks Sequential: conv, bn, LeakyReLU, then per upsampling stage
    # (Upsample, conv, bn, LeakyReLU), so conv{i}/bn{i} sit at 4i/4i + 1; then the output conv.
    DeepGenerator: [
        (r"conv(\d+)", lambda m: f"conv_blocks.{4 * int(m[1])}"),
        (r"bn(\d+)", lambda m: f"conv_blocks.{4 * int(m[1]) + 1}"),
        (r"conv_out", lambda m: "conv_blocks.19"),
    ],
}


def _rules(model) -> list[Rule]:
    """The name rules of ``model``'s family (DeepLab's depend on its backbone)."""
    if isinstance(model, DeepLabV3):
        return _deeplab_rules(model.backbone)
    for family, rules in _RULES.items():
        if isinstance(model, family):
            return rules
    raise ValueError(f"No PyTorch import for {type(model).__name__}")


def _torch_prefix(rules: list[Rule], module_path: str) -> str:
    """Return the PyTorch module prefix of a Flax module path such as ``'layer1_0/conv1'``."""
    for pattern, rename in rules:
        match = re.fullmatch(pattern, module_path)
        if match:
            return rename(match)
    raise ValueError(f"No PyTorch name rule for Flax module {module_path!r}")


def _expected_tensors(
    rules: list[Rule], variables
) -> dict[str, tuple[tuple[str, ...], str, tuple]]:
    """Map every PyTorch key of the architecture to (Flax path, conversion kind, torch shape).

    Kinds: ``'conv'`` (OIHW -> HWIO), ``'linear'`` ([out, in] -> [in, out]) and ``'copy'``.
    """
    expected = {}
    for collection in ("params", "batch_stats"):
        flat = jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]
        for key_path, leaf in flat:
            names = tuple(k.key for k in key_path)
            module, leaf_name = "/".join(names[:-1]), names[-1]
            prefix = _torch_prefix(rules, module)
            shape = tuple(leaf.shape)
            if leaf_name == "kernel" and len(shape) == 4:
                kind, torch_name = "conv", "weight"
                torch_shape = (shape[3], shape[2], shape[0], shape[1])
            elif leaf_name == "kernel" and len(shape) == 2:
                kind, torch_name, torch_shape = "linear", "weight", shape[::-1]
            else:
                kind, torch_shape = "copy", shape
                torch_name = {
                    "scale": "weight",
                    "bias": "bias",
                    "mean": "running_mean",
                    "var": "running_var",
                }[leaf_name]
            expected[f"{prefix}.{torch_name}"] = ((collection, *names), kind, torch_shape)
    return expected


def _convert(kind: str, array: np.ndarray) -> np.ndarray:
    """Convert one tensor from PyTorch to Flax layout (see the module docstring)."""
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "linear":
        return np.transpose(array)
    return array


def _in_channels(state_dict: Mapping[str, np.ndarray]) -> int:
    """Input channels of the stem: the second axis of the first 4-D tensor of the state dict."""
    for value in state_dict.values():
        if np.ndim(value) == 4:
            return int(np.shape(value)[1])
    raise ValueError("State dict holds no convolution weight (no 4-D tensor)")


def _normalize_keys(model, state_dict: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Map each state-dict key to the key the rules use (DeepLab aliases; dropped keys left out)."""
    if not isinstance(model, DeepLabV3):
        return {key: key for key in state_dict}
    names, dropped = {}, 0
    for key in state_dict:
        if key.startswith(_DEEPLAB_DROPPED_PREFIX):
            dropped += 1
            continue
        name = key
        for alias, target in _DEEPLAB_KEY_ALIASES.items():
            if key.startswith(alias):
                name = target + key[len(alias) :]
        names[key] = name
    if dropped:
        logging.info("Dropped %d %s* keys (training-only head).", dropped, _DEEPLAB_DROPPED_PREFIX)
    return names


def convert_state_dict(
    arch: str,
    num_classes: int | None,
    state_dict: Mapping[str, np.ndarray],
    *,
    image_shape: tuple[int, int, int] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> dict:
    """Convert a PyTorch state dict to Flax variables ``{'params', 'batch_stats'}``.

    Args:
      arch: a model of ``fastdfkd_jax.models.MODELS`` with an import (every classifier and
        segmentation model, and ``generator_imagenet``).
      num_classes: number of logits of the network; None for a generator.
      state_dict: PyTorch key -> numpy array (e.g. ``{k: v.numpy() for k, v in sd.items()}``).
      image_shape: ``(H, W, C)`` to build the network with; by default 32x32 with the stem's input
        channels (no zoo model's parameter shapes depend on H and W). Ignored for generators.
      overrides: module fields for ``create_model`` (e.g. ``{'nz': 100}`` for a generator).

    Returns:
      Nested dicts of float32 numpy arrays, ready for ``model.apply``.

    Raises:
      ValueError: for an unknown or unsupported ``arch``, a key the architecture lacks, a missing
        key or a shape mismatch; the message names the first offending key and the shapes.

    """
    if arch not in MODELS:
        raise ValueError(f"Unknown model {arch!r}; choices: {', '.join(sorted(MODELS))}")
    model = create_model(arch, num_classes=num_classes, **dict(overrides or {}))
    rules = _rules(model)
    if arch in GENERATORS:
        probe = jnp.zeros((1, *model.latent_shape))
    else:
        if image_shape is None:
            image_shape = (_PROBE_SIZE, _PROBE_SIZE, _in_channels(state_dict))
        probe = jnp.zeros((1, *image_shape))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), probe, train=False))
    expected = _expected_tensors(rules, variables)
    described = f"{arch} with {num_classes} classes" if num_classes is not None else arch

    out: dict = {"params": {}, "batch_stats": {}}
    for key, name in _normalize_keys(model, state_dict).items():
        value = state_dict[key]
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        if name not in expected:
            raise ValueError(
                f"State dict key {key!r} (shape {tuple(np.shape(value))}) does not exist in "
                f"{described}"
            )
        path, kind, torch_shape = expected.pop(name)
        if tuple(np.shape(value)) != torch_shape:
            raise ValueError(
                f"Shape mismatch for {key!r}: state dict has {tuple(np.shape(value))}, "
                f"{described} expects {torch_shape}"
            )
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _convert(kind, np.asarray(value, dtype=np.float32))
    if expected:
        key, (_, _, torch_shape) = next(iter(expected.items()))
        raise ValueError(
            f"State dict lacks {len(expected)} key(s) of {arch}, first {key!r} "
            f"(expected shape {torch_shape})"
        )
    return out
