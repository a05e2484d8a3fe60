"""Types shared by every dataset module: metadata, the not-available error, data-dir resolution."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from fastdfkd_jax.checks import UserInputError

# Environment variable that overrides TFDS's default data directory for our datasets.
DATA_DIR_ENV = "FASTDFKD_DATA_DIR"

SPLITS = ("train", "test")
TASKS = ("classification", "segmentation")
# Label of unlabeled pixels in segmentation maps (the NYUv2 toolkit's 0 - 1 as uint8).
IGNORE_LABEL = 255

Split = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static metadata of a dataset.

    Attributes:
      name: registry name.
      image_shape: `(H, W, C)` of one image.
      num_classes: number of labels; labels are `0 .. num_classes - 1`.
      mean: per-channel mean of the raw `[0, 1]` training images, `C` floats.
      std: per-channel standard deviation of the raw training images, `C` floats.
      train_size: number of training examples.
      test_size: number of test examples.
      task: `'classification'` (labels `[N]`) or `'segmentation'` (label maps `[N, H, W]`, with
        `IGNORE_LABEL` on unlabeled pixels; `image_shape` is then the training crop).

    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    task: str = "classification"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}.")
        channels = self.image_shape[-1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"{self.name}: mean {self.mean} and std {self.std} need {channels} entries each."
            )

    def split_size(self, split: str) -> int:
        """Return the number of examples of `split` (`'train'` or `'test'`)."""
        check_split(split)
        return self.train_size if split == "train" else self.test_size


class DatasetNotFoundError(UserInputError):
    """A registered dataset absent from this machine; the message says how to get it."""


def check_split(split: str) -> None:
    """Raise `ValueError` unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """Return the data directory: `data_dir`, else `$FASTDFKD_DATA_DIR`, else TFDS's default.

    TFDS's default is `$TFDS_DATA_DIR` if set, else `~/tensorflow_datasets`.
    """
    if data_dir is not None:
        return os.fspath(data_dir)
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    # Imported lazily: TFDS takes about a second to import and `digits` does not need it.
    from tensorflow_datasets.core import constants

    return os.path.expanduser(constants.DATA_DIR)


def as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """Packs arrays into the split dict of the conventions.

    Args:
      images: `[N, H, W, C]` in `[0, 1]` (any float) or uint8 `0..255`.
      labels: `[N]` integers.

    Returns:
      `{'image': float32 [N, H, W, C] in [0, 1], 'label': int32 [N]}`.

    """
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / np.float32(np.iinfo(np.uint8).max)
    return {"image": images.astype(np.float32), "label": labels.astype(np.int32)}
