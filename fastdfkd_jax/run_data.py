"""The data a distillation run reads: its dataset's metadata at the run's size, its test split.

A data-free run touches real data only to score the teacher and the student. `dataset_info`
applies `dataset.image_size` (0: the dataset's own size) to the registry's metadata: ImageNet's
evaluation view and synthesis size become `image_size` (e.g. 64 or 128 for cheaper runs; 224 is
torchvision's), NYUv2's training crop does (evaluation always uses the whole 256x341 images).
`open_test_split` opens the test split as an example source (`data.open_split`, ImageNet at the
run's size, or the generated stand-in of a smoke test) and `check_test_split` checks its first
examples against the metadata before any training: a layout the loader cannot read names what is
missing (the loaders raise), images of the wrong size or channel count and labels outside the
classes raise here.
"""

import dataclasses
from typing import Any

import ml_collections
import numpy as np

from fastdfkd_jax import data, smoke
from fastdfkd_jax.data import base, imagenet, streaming

# Data sets whose size `dataset.image_size` may change.
RESIZABLE = ("imagenet2012", "imagenet2012_folder", "nyuv2")
# How many examples `check_test_split` reads (each may decode a file).
CHECKED_EXAMPLES = 4


def dataset_info(config: ml_collections.ConfigDict) -> base.DatasetInfo:
    """`data.get_info(dataset.name)` with `dataset.image_size` applied (see the module docstring).

    Raises:
      ValueError: an unknown dataset, or an image size for a dataset of fixed size.

    """
    info = data.get_info(config.dataset.name)
    size = config.dataset.image_size
    if not size:
        return info
    if info.name not in RESIZABLE:
        raise ValueError(
            f"dataset.image_size={size}: {info.name} has a fixed size {info.image_shape}; "
            f"only {RESIZABLE} take another."
        )
    if size < 1:
        raise ValueError(f"dataset.image_size must be >= 0, got {size}.")
    return dataclasses.replace(info, image_shape=(size, size, info.image_shape[-1]))


def streamed(name: str) -> bool:
    """Whether the registry reads `name` example by example (too large, or label maps)."""
    return data.is_streamed(name)


def open_test_split(
    config: ml_collections.ConfigDict, info: base.DatasetInfo, workdir: str
) -> streaming.ExampleSource:
    """The test split the run scores its models on, as an example source.

    With `smoke_test`, the generated stand-in (`smoke.mock_test_split`); ImageNet in the evaluation
    view at `info`'s size; otherwise `data.open_split(name, 'test', data_dir)`.
    """
    name, data_dir = config.dataset.name, config.dataset.data_dir or None
    size = info.image_shape[0]
    if config.smoke_test:
        return smoke.mock_test_split(name, workdir, smoke.NUM_EXAMPLES, size)
    if name.startswith("imagenet2012") and size != imagenet.CROP_SIZE:
        resize = round(size * imagenet.RESIZE_SIZE / imagenet.CROP_SIZE)
        opener = imagenet.open_tfds if name == "imagenet2012" else imagenet.open_folder
        return opener("test", data_dir, resize=resize, crop=size)
    return data.open_split(name, "test", data_dir)


def check_test_split(source: streaming.ExampleSource, info: base.DatasetInfo) -> None:
    """Checks the first examples of a test split against `info`, before any training.

    Classification: images [H, W, C] of `info.image_shape`, integer labels in 0..K-1.
    Segmentation: images [h, w, C] (any size: evaluation uses whole images), label maps [h, w] with
    values in 0..K-1 or `IGNORE_LABEL`.

    Raises:
      ValueError: an empty split, or an example that breaks the above (naming it and the value).

    """
    if len(source) == 0:
        raise ValueError(f"The {info.name} test split is empty.")
    channels, k = info.image_shape[-1], info.num_classes
    for i in range(min(CHECKED_EXAMPLES, len(source))):
        example: Any = source[i]
        image, label = np.asarray(example["image"]), np.asarray(example["label"])
        where = f"{info.name} test example {i}"
        if image.ndim != 3 or image.shape[-1] != channels:
            raise ValueError(f"{where}: image of shape {image.shape}, expected [H, W, {channels}].")
        if info.task == "classification":
            if image.shape != tuple(info.image_shape):
                raise ValueError(
                    f"{where}: image of shape {image.shape}, expected {tuple(info.image_shape)}."
                )
            if label.shape != () or not 0 <= int(label) < k:
                raise ValueError(f"{where}: label {label.tolist()} outside 0..{k - 1}.")
            continue
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{where}: label map of shape {label.shape} for an image of {image.shape[:2]}."
            )
        bad = (label >= k) & (label != base.IGNORE_LABEL) | (label < 0)
        if bad.any():
            raise ValueError(
                f"{where}: label value {int(label[bad][0])} outside 0..{k - 1} and "
                f"{base.IGNORE_LABEL}."
            )
