"""The model zoo: Flax linen classifiers, segmentation models and generators, keyed by name.

``MODELS`` maps a config string to a constructor (a module class or a ``functools.partial`` of one
with the architecture's fields bound); ``create_model(name, num_classes=..., **overrides)`` builds
one. Classifiers (logits ``[N, num_classes]``) and segmentation models (logits
``[N, H, W, num_classes]`` at the input's size) are called as ``model.apply(variables, x,
train=False)`` or ``model.apply(variables, x, train=True, mutable=['batch_stats'])`` on NHWC images;
generators always normalize with batch statistics (see :mod:`fastdfkd_jax.models.generator`).
``check_fits`` says, before any compute, whether a classifier maps a dataset's images to its
classes.
"""

import ast
import functools
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fastdfkd_jax.models import small_cnn
from fastdfkd_jax.models.deeplab import DeepLabV3
from fastdfkd_jax.models.generator import DeepGenerator, Generator
from fastdfkd_jax.models.mobilenetv2 import MobileNetV2
from fastdfkd_jax.models.resnet import ResNet, ResNetTiny
from fastdfkd_jax.models.resnet_imagenet import ImageNetResNet
from fastdfkd_jax.models.seg_tiny import TinyDeepLab
from fastdfkd_jax.models.small_cnn import SmallCNN
from fastdfkd_jax.models.vgg import VGG, VGG11_CFG
from fastdfkd_jax.models.wresnet import WideResNet

_partial = functools.partial

# Classifiers take `num_classes`; generators do not.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    # CIFAR zoo of the original code.
    "resnet18": _partial(ResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": _partial(ResNet, stage_sizes=(3, 4, 6, 3)),
    "wrn16_1": _partial(WideResNet, depth=16, widen_factor=1),
    "wrn16_2": _partial(WideResNet, depth=16, widen_factor=2),
    "wrn40_1": _partial(WideResNet, depth=40, widen_factor=1),
    "wrn40_2": _partial(WideResNet, depth=40, widen_factor=2),
    "vgg11_bn": _partial(VGG, cfg=VGG11_CFG),
    # Small students (any input size): the original's resnet_tiny family and a 10-layer WRN.
    "resnet8": _partial(ResNetTiny, depth=8),
    "resnet20": _partial(ResNetTiny, depth=20),
    "wrn10_1": _partial(WideResNet, depth=10, widen_factor=1),
    # CPU data sets.
    "digits_cnn_teacher": _partial(SmallCNN, stages=small_cnn.DIGITS_TEACHER_STAGES),
    "digits_cnn_small": _partial(SmallCNN, stages=small_cnn.DIGITS_SMALL_STAGES),
    "digits_cnn_tiny": _partial(SmallCNN, stages=small_cnn.DIGITS_TINY_STAGES),
    "fmnist_cnn_teacher": _partial(SmallCNN, stages=small_cnn.FMNIST_TEACHER_STAGES),
    "fmnist_cnn_medium": _partial(SmallCNN, stages=small_cnn.FMNIST_MEDIUM_STAGES),
    "fmnist_cnn_small": _partial(SmallCNN, stages=small_cnn.FMNIST_SMALL_STAGES),
    "fmnist_cnn_tiny": _partial(SmallCNN, stages=small_cnn.FMNIST_TINY_STAGES),
    "fmnist_resnet8": _partial(ResNetTiny, depth=8),
    # ImageNet (224x224): torchvision's layouts, named as in the original code.
    "resnet18_imagenet": _partial(ImageNetResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34_imagenet": _partial(ImageNetResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet50_imagenet": _partial(ImageNetResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True),
    "mobilenetv2_imagenet": MobileNetV2,
}
# Dense prediction: logits [N, H, W, num_classes]; named as in the original code.
SEGMENTATION_MODELS: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3_resnet50": _partial(DeepLabV3, backbone="resnet50"),
    "deeplabv3_mobilenet": _partial(DeepLabV3, backbone="mobilenetv2"),
    # Smoke runs and tests of the segmentation path (any input size).
    "deeplabv3_tiny": TinyDeepLab,
}
GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "generator": Generator,
    "generator_imagenet": DeepGenerator,
}
MODELS: dict[str, Callable[..., nn.Module]] = {**CLASSIFIERS, **SEGMENTATION_MODELS, **GENERATORS}


def is_import_path(name: str) -> bool:
    """Whether ``name`` names a model by import path, ``'package.module:ClassName'``."""
    return ":" in name


def from_import_path(name: str) -> Callable[..., nn.Module]:
    """The module class (or constructor) named ``'package.module:ClassName'``, big_vision style.

    Raises:
      ValueError: naming the path, when the module cannot be imported or has no such attribute.
    """
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Model {name!r}: cannot import {module_name!r} ({error}).") from None
    if not hasattr(module, attribute):
        raise ValueError(f"Model {name!r}: {module_name!r} has no {attribute!r}.")
    return getattr(module, attribute)


def parse_kwargs(text: str, key: str) -> dict[str, Any]:
    """A model's constructor keywords from their config field (`teacher.kwargs`, ...): a Python
    dict literal such as ``"{'width': 32, 'depth': 4}"``; empty for ``""``.

    Raises:
      ValueError: naming `key` and the text, when it is not a dict literal with string keys.

    """
    if not text:
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(
            f"{key}={text!r} is not a dict literal of keyword arguments, e.g. \"{{'width': 32}}\"."
        )
    return value


def check_classifier_name(name: str) -> None:
    """Raises a ValueError unless ``name`` is a zoo classifier or an importable model path."""
    if is_import_path(name):
        from_import_path(name)
    elif name not in CLASSIFIERS:
        raise ValueError(
            f"Unknown model {name!r}; choose one of {sorted(CLASSIFIERS)} or name a model by "
            "import path, 'package.module:ClassName'."
        )


def create_model(
    name: str, num_classes: int | None = None, dtype: Any = None, **overrides
) -> nn.Module:
    """Build the model registered as ``name``, or named by import path.

    Args:
      name: a key of ``MODELS``, or ``'package.module:ClassName'``: a classifier or segmentation
        model of the user's, a Flax module taking ``num_classes`` (and ``dtype`` when given), called
        as ``model(x, train=...)`` (docs/CONVENTIONS.md).
      num_classes: number of logits (per pixel for segmentation models); required for classifiers
        and segmentation models, must be None for generators.
      dtype: the computation dtype (e.g. ``jnp.bfloat16``, see :mod:`fastdfkd_jax.precision`);
        None leaves the model's default (the dtype of its inputs and parameters, float32).
      **overrides: module fields to set, e.g. ``img_size=28, nc=1`` for the generator or
        ``depth=10`` for a WRN.

    Raises:
      ValueError: for an unknown name (listing the choices), a missing ``num_classes`` for a
        classifier or segmentation model, a ``num_classes`` given to a generator, or a ``dtype``
        for a model without a ``dtype`` field.

    """
    if is_import_path(name):
        constructor = from_import_path(name)
    elif name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choices: {', '.join(sorted(MODELS))}")
    else:
        constructor = MODELS[name]
    if dtype is not None:
        module_class = getattr(constructor, "func", constructor)  # a class or a partial of one
        if "dtype" not in getattr(module_class, "__dataclass_fields__", {}):
            raise ValueError(f"Model {name!r} has no dtype field: it cannot compute in {dtype}.")
        overrides["dtype"] = dtype
    if name in GENERATORS:
        if num_classes is not None:
            raise ValueError(f"Generator {name!r} takes no num_classes (got {num_classes})")
        return MODELS[name](**overrides)
    if num_classes is None:
        raise ValueError(f"Model {name!r} needs num_classes")
    try:
        return constructor(num_classes=num_classes, **overrides)
    except TypeError as error:  # a keyword the constructor does not take (a config's kwargs)
        raise ValueError(f"Model {name!r} with {sorted(overrides)}: {error}") from None


# Generators whose output side is 16x their spatial latent (four 2x upsamplings).
SPATIAL_LATENT_UPSAMPLING = 16


def create_generator(name: str, image_shape: tuple[int, int, int], **overrides) -> nn.Module:
    """The generator ``name`` sized to make images of ``image_shape`` (H, W, C).

    ``'generator'`` takes ``img_size=H``; ``'generator_imagenet'`` (spatial latent) takes
    ``latent_size=H // 16``. ``overrides``: other fields, e.g. ``nz``, ``ngf``.

    Raises:
      ValueError: an unknown name, non-square images, or a side the generator cannot make.

    """
    if name not in GENERATORS:
        raise ValueError(f"Unknown generator {name!r}; choices: {', '.join(sorted(GENERATORS))}")
    height, width, channels = image_shape
    if height != width:
        raise ValueError(f"Generators make square images; got {tuple(image_shape)}.")
    if GENERATORS[name] is DeepGenerator:
        if height % SPATIAL_LATENT_UPSAMPLING:
            raise ValueError(
                f"{name!r} makes sides that are multiples of {SPATIAL_LATENT_UPSAMPLING}; "
                f"got {height}."
            )
        size = dict(latent_size=height // SPATIAL_LATENT_UPSAMPLING)
    else:
        size = dict(img_size=height)
    return create_model(name, **size, nc=channels, **overrides)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct``s)."""
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(params)))


def check_fits(model: nn.Module, info: Any, what: str) -> None:
    """Raises a ValueError when `model` cannot map the dataset's images to its classes.

    `info` is the dataset's `DatasetInfo`; `what` names the model in the message ('student'). A
    classifier must give logits [1, K], a model for a segmentation dataset [1, H, W, K].
    """
    shape = (1, *info.image_shape)
    try:
        out = jax.eval_shape(
            lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros(shape), train=False)[0]
        )
    except Exception as e:  # noqa: BLE001 -- re-raised with the shapes that did not fit
        raise ValueError(
            f"The {what} {type(model).__name__} does not accept images of shape {info.image_shape} "
            f"({info.name}): {e}"
        ) from e
    if getattr(info, "task", "classification") == "segmentation":
        expected = (1, *info.image_shape[:2], info.num_classes)
        if out.shape != expected:
            raise ValueError(
                f"The {what} {type(model).__name__} outputs {out.shape} for {info.name}, a "
                f"segmentation dataset: expected per-pixel logits {expected}."
            )
        return
    if out.shape != (1, info.num_classes):
        raise ValueError(
            f"The {what} outputs {out.shape[-1]} classes but {info.name} has {info.num_classes}."
        )


__all__ = [
    "CLASSIFIERS",
    "GENERATORS",
    "MODELS",
    "SEGMENTATION_MODELS",
    "DeepGenerator",
    "DeepLabV3",
    "Generator",
    "ImageNetResNet",
    "MobileNetV2",
    "ResNet",
    "ResNetTiny",
    "SmallCNN",
    "TinyDeepLab",
    "VGG",
    "WideResNet",
    "check_fits",
    "count_params",
    "create_generator",
    "create_model",
    "parse_kwargs",
]
