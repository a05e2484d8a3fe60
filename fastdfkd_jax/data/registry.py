"""The dataset registry: a plain dict from name to (metadata, loader), and its two entry points.

Every dataset module provides `INFO: DatasetInfo` and `load(split, data_dir) -> split dict`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from fastdfkd_jax.data import base, cifar, digits, fashion_mnist


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its metadata and a loader `(split, data_dir) -> split dict`."""

    info: base.DatasetInfo
    load: Callable[[str, str | None], base.Split]


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(digits.INFO, digits.load),
    "fashion_mnist": DatasetEntry(fashion_mnist.INFO, fashion_mnist.load),
    "cifar10": DatasetEntry(cifar.CIFAR10_INFO, cifar.load_cifar10),
    "cifar100": DatasetEntry(cifar.CIFAR100_INFO, cifar.load_cifar100),
}


def _entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[name]


def get_info(name: str) -> base.DatasetInfo:
    """Metadata of dataset `name`; raises `ValueError` listing the choices for an unknown name."""
    return _entry(name).info


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> base.Split:
    """Load a whole split into memory.

    Args:
      name: a key of `DATASETS`.
      split: `'train'` or `'test'`.
      data_dir: where prepared TFDS datasets live; default `$FASTDFKD_DATA_DIR`, else TFDS's
        default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Ignored by `digits`.

    Returns:
      `{'image': float32 [N, H, W, C] in [0, 1], 'label': int32 [N]}` (numpy arrays).

    Raises:
      ValueError: unknown name or split.
      DatasetNotFoundError: the dataset is registered but not on this machine; the message says how
        to get it.

    """
    entry = _entry(name)
    base.check_split(split)
    data = entry.load(split, None if data_dir is None else os.fspath(data_dir))
    _check_split_data(entry.info, split, data)
    return data


def _check_split_data(info: base.DatasetInfo, split: str, data: base.Split) -> None:
    # Checks the conventions at the boundary: a broken prepared dataset fails here, not in a model.
    images, labels = data["image"], data["label"]
    if images.dtype != np.float32 or labels.dtype != np.int32:
        raise ValueError(f"{info.name}/{split}: dtypes {images.dtype}, {labels.dtype}.")
    if images.shape[1:] != info.image_shape or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{info.name}/{split}: image shape {images.shape}, label shape {labels.shape}, "
            f"expected [N, {', '.join(map(str, info.image_shape))}] and [N]."
        )
