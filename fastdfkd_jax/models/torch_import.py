"""Conversion of PyTorch state dicts of the original code's classifiers to Flax variables.

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

from fastdfkd_jax.models import CLASSIFIERS, create_model
from fastdfkd_jax.models.resnet import ResNet, ResNetTiny
from fastdfkd_jax.models.small_cnn import SmallCNN
from fastdfkd_jax.models.vgg import VGG
from fastdfkd_jax.models.wresnet import WideResNet

# Spatial size used to build the parameter shapes; no zoo model's parameters depend on it.
_PROBE_SIZE = 32
# BatchNorm buffers PyTorch keeps but Flax does not need.
_IGNORED_SUFFIXES = (".num_batches_tracked",)

Rule = tuple[str, Callable[[re.Match], str]]

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
}


def _torch_prefix(family: type, module_path: str) -> str:
    """Return the PyTorch module prefix of a Flax module path such as ``'layer1_0/conv1'``."""
    for pattern, rename in _RULES[family]:
        match = re.fullmatch(pattern, module_path)
        if match:
            return rename(match)
    raise ValueError(f"No PyTorch name rule for Flax module {module_path!r} of {family.__name__}")


def _expected_tensors(family: type, variables) -> dict[str, tuple[tuple[str, ...], str, tuple]]:
    """Map every PyTorch key of the architecture to (Flax path, conversion kind, torch shape).

    Kinds: ``'conv'`` (OIHW -> HWIO), ``'linear'`` ([out, in] -> [in, out]) and ``'copy'``.
    """
    expected = {}
    for collection in ("params", "batch_stats"):
        flat = jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]
        for key_path, leaf in flat:
            names = tuple(k.key for k in key_path)
            module, leaf_name = "/".join(names[:-1]), names[-1]
            prefix = _torch_prefix(family, module)
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


def convert_state_dict(
    arch: str,
    num_classes: int,
    state_dict: Mapping[str, np.ndarray],
    *,
    image_shape: tuple[int, int, int] | None = None,
) -> dict:
    """Convert a PyTorch classifier state dict to Flax variables ``{'params', 'batch_stats'}``.

    Args:
      arch: a classifier of ``fastdfkd_jax.models.MODELS`` (``'resnet34'``, ``'wrn40_2'``, ...).
      num_classes: number of logits of the network.
      state_dict: PyTorch key -> numpy array (e.g. ``{k: v.numpy() for k, v in sd.items()}``).
      image_shape: ``(H, W, C)`` to build the network with; by default 32x32 with the stem's input
        channels (no zoo classifier's parameter shapes depend on H and W).

    Returns:
      Nested dicts of float32 numpy arrays, ready for ``model.apply``.

    Raises:
      ValueError: for a non-classifier ``arch``, a key the architecture lacks, a missing key or a
        shape mismatch; the message names the first offending key and the shapes.

    """
    if arch not in CLASSIFIERS:
        raise ValueError(f"Unknown classifier {arch!r}; choices: {', '.join(sorted(CLASSIFIERS))}")
    model = create_model(arch, num_classes=num_classes)
    family = next((f for f in _RULES if isinstance(model, f)), None)
    if family is None:
        raise ValueError(f"No PyTorch import for {arch!r} ({type(model).__name__})")
    if image_shape is None:
        image_shape = (_PROBE_SIZE, _PROBE_SIZE, _in_channels(state_dict))
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False)
    )
    expected = _expected_tensors(family, variables)

    out: dict = {"params": {}, "batch_stats": {}}
    for key, value in state_dict.items():
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        if key not in expected:
            raise ValueError(
                f"State dict key {key!r} (shape {tuple(np.shape(value))}) does not exist in "
                f"{arch} with {num_classes} classes"
            )
        path, kind, torch_shape = expected.pop(key)
        if tuple(np.shape(value)) != torch_shape:
            raise ValueError(
                f"Shape mismatch for {key!r}: state dict has {tuple(np.shape(value))}, "
                f"{arch} with {num_classes} classes expects {torch_shape}"
            )
        node = out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = _convert(kind, np.asarray(value, dtype=np.float32))
    if expected:
        key, (_, _, torch_shape) = next(iter(expected.items()))
        raise ValueError(
            f"State dict lacks {len(expected)} key(s) of {arch}, first {key!r} "
            f"(expected shape {torch_shape})"
        )
    return out
