"""A user's own data as one NumPy file: the dataset named `'npz:PATH'`.

A run that scores a user's models on their own test images (or trains a teacher on their own
data) names the file as its dataset: `--config.dataset.name=npz:/data/mine.npz`. The file
(`write` makes one) holds

- `test_image` float32 [N, H, W, C] in [0, 1] and `test_label` int32 [N] (and, for teacher
  training, `train_image` and `train_label`);
- `num_classes` (a scalar), `mean` and `std` ([C]: the per-channel statistics the models
  normalize their inputs with).

Its metadata (`info`) is read from the file, once per path and modification time.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from fastdfkd_jax.data import base

PREFIX = "npz:"


def is_npz_name(name: str) -> bool:
    """Whether a dataset name names a NumPy file (`'npz:PATH'`)."""
    return name.startswith(PREFIX)


def path_of(name: str) -> str:
    """The file of the dataset `'npz:PATH'`, checked to exist."""
    path = name[len(PREFIX) :]
    if not os.path.isfile(path):
        raise base.DatasetNotFoundError(
            f"Dataset {name!r}: no file {path!r} (write one with fastdfkd_jax.data.npz.write)."
        )
    return path


def write(
    path: str,
    *,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> str:
    """Writes a dataset file (module docstring); returns its dataset name `'npz:PATH'`.

    Raises:
      ValueError: images not [N, H, W, C] in [0, 1], labels not [N] integers in 0..K-1, or
        `mean`/`std` not of C entries; each message names the array and the value.

    """
    arrays = {"test": (test_images, test_labels)}
    if train_images is not None or train_labels is not None:
        arrays["train"] = (train_images, train_labels)
    out = dict(
        num_classes=np.int32(num_classes),
        mean=np.asarray(mean, np.float32),
        std=np.asarray(std, np.float32),
    )
    for split, (images, labels) in arrays.items():
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels)
        _check(split, images, labels, num_classes, out["mean"], out["std"])
        out[f"{split}_image"], out[f"{split}_label"] = images, labels.astype(np.int32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:  # np.savez would append '.npz' to another name
        np.savez(f, **out)
    return PREFIX + path


def _check(split, images, labels, num_classes, mean, std) -> None:
    if images.ndim != 4:
        raise ValueError(f"{split} images of shape {images.shape}: expected [N, H, W, C].")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{split} labels of shape {labels.shape} for {len(images)} images.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{split} labels of dtype {labels.dtype}: expected integers.")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"{split} images in [{images.min()}, {images.max()}]: expected [0, 1] (divide by 255)."
        )
    if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(
            f"{split} labels in {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}."
        )
    channels = images.shape[-1]
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"mean {mean.tolist()} and std {std.tolist()} need {channels} entries.")


def content_name(name: str) -> str:
    """`'npz:sha256=<digest of the file>'` for `'npz:PATH'` (what decides a run's result: the
    data, not where it lies), or `name` itself when the file is not there.
    """
    path = name[len(PREFIX) :]
    if not os.path.isfile(path):
        return name
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return f"{PREFIX}sha256={digest.hexdigest()}"


# Read size of `content_name`'s hashing.
_HASH_BLOCK_BYTES = 1 << 20


@functools.cache
def _info(name: str, path: str, mtime: float) -> base.DatasetInfo:
    with np.load(path) as f:
        sizes = {s: len(f[f"{s}_label"]) if f"{s}_label" in f else 0 for s in base.SPLITS}
        return base.DatasetInfo(
            name=name,
            image_shape=tuple(int(d) for d in f["test_image"].shape[1:]),
            num_classes=int(f["num_classes"]),
            mean=tuple(float(v) for v in f["mean"]),
            std=tuple(float(v) for v in f["std"]),
            train_size=sizes["train"],
            test_size=sizes["test"],
        )


def info(name: str) -> base.DatasetInfo:
    """The metadata of the dataset `'npz:PATH'`, read from its file."""
    path = path_of(name)
    return _info(name, path, os.path.getmtime(path))


def load(name: str, split: str) -> base.Split:
    """A split of `'npz:PATH'`: `{'image': float32 [N, H, W, C], 'label': int32 [N]}`."""
    path = path_of(name)
    with np.load(path) as f:
        if f"{split}_image" not in f:
            raise base.DatasetNotFoundError(f"Dataset {name!r} has no {split} split.")
        return base.as_split(f[f"{split}_image"], f[f"{split}_label"])
