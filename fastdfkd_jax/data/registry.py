"""The dataset registry: a plain dict from name to (metadata, loader), and its entry points.

Every dataset module provides a `DatasetInfo` and either `load(split, data_dir) -> split dict`
(small datasets, whole split in memory) or `open(split, data_dir) -> ExampleSource` (ImageNet and
NYUv2: random access to examples, batched by `streaming.iterate_batches`). `open_split` works for
every dataset, so evaluation can iterate batches the same way everywhere. A name `'npz:PATH'` is a
user's own data in one NumPy file (`npz`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from fastdfkd_jax.data import base, cifar, digits, fashion_mnist, imagenet, npz, nyuv2, streaming


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its metadata and a loader, in memory or streamed (exactly one).

    Attributes:
      info: the metadata.
      load: `(split, data_dir) -> split dict`, the whole split in memory.
      open: `(split, data_dir) -> ExampleSource`, for splits read example by example.

    """

    info: base.DatasetInfo
    load: Callable[[str, str | None], base.Split] | None = None
    open: Callable[[str, str | None], streaming.ExampleSource] | None = None

    def __post_init__(self):
        if (self.load is None) == (self.open is None):
            raise ValueError(f"{self.info.name}: give exactly one of load and open.")


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(digits.INFO, load=digits.load),
    "fashion_mnist": DatasetEntry(fashion_mnist.INFO, load=fashion_mnist.load),
    "cifar10": DatasetEntry(cifar.CIFAR10_INFO, load=cifar.load_cifar10),
    "cifar100": DatasetEntry(cifar.CIFAR100_INFO, load=cifar.load_cifar100),
    "imagenet2012": DatasetEntry(imagenet.INFO, open=imagenet.open_tfds),
    "imagenet2012_folder": DatasetEntry(imagenet.FOLDER_INFO, open=imagenet.open_folder),
    "nyuv2": DatasetEntry(nyuv2.INFO, open=nyuv2.open_source),
}


def _entry(name: str) -> DatasetEntry:
    if npz.is_npz_name(name):  # a user's own file (`fastdfkd_jax.data.npz`)
        return DatasetEntry(npz.info(name), load=lambda split, _: npz.load(name, split))
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)} or a NumPy file, "
            f"'{npz.PREFIX}PATH' (fastdfkd_jax.data.npz)."
        )
    return DATASETS[name]


def is_streamed(name: str) -> bool:
    """Whether dataset `name` is read example by example (too large, or label maps)."""
    return _entry(name).load is None


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
      ValueError: unknown name or split, or a streamed dataset (use `open_split`).
      DatasetNotFoundError: the dataset is registered but not on this machine; the message says how
        to get it.

    """
    entry = _entry(name)
    base.check_split(split)
    if entry.load is None:
        raise ValueError(
            f"{name} is read example by example, not loaded whole: use "
            f"open_split({name!r}, {split!r}, data_dir) and streaming.iterate_batches."
        )
    data = entry.load(split, None if data_dir is None else os.fspath(data_dir))
    _check_split_data(entry.info, split, data)
    return data


def open_split(
    name: str, split: str, data_dir: str | os.PathLike | None = None
) -> streaming.ExampleSource:
    """Random access to a split's examples, for any registered dataset.

    Args:
      name: a key of `DATASETS`.
      split: `'train'` or `'test'`.
      data_dir: as for `load_split`; for `imagenet2012_folder` and `nyuv2` the folder holding the
        dataset's layout (see their modules).

    Returns:
      An `ExampleSource`: `len(source)` and `source[i] -> {'image': [H, W, C] (uint8 for streamed
      datasets, float32 in [0, 1] for in-memory ones), 'label': int or a label map [H, W]}`. Batch
      it with `streaming.iterate_batches`, which yields float32 images in `[0, 1]`.

    Raises:
      ValueError: unknown name or split; a dataset whose files break its layout.
      DatasetNotFoundError: the dataset is not on this machine; the message says what is missing.

    """
    entry = _entry(name)
    base.check_split(split)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    if entry.open is not None:
        return entry.open(split, data_dir)
    return streaming.ArraySource(load_split(name, split, data_dir))


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
