"""Fashion-MNIST (28x28 grayscale, 10 classes, 60,000 train / 10,000 test) as the TFDS dataset.

We read it as TFDS's `fashion_mnist` dataset through `tfds.data_source` (no TensorFlow needed).
Where does the prepared dataset come from:

1. Offline, from Debian's package (`apt-get install dataset-fashion-mnist`, IDX files in
   `/usr/share/datasets/fashion-mnist/`). TFDS's stock builder refuses these files (their gzip
   headers differ, so the checksums do not match, though the contents are the same) and its IDX
   reader needs TensorFlow, so `DebianFashionMNIST` subclasses the stock builder and overrides only
   its split generators to read the local files with `gzip` and numpy. The dataset it writes is
   the standard `fashion_mnist` (same name, version, features and example keys, hence the same
   example order as TFDS's own download). `load` prepares it automatically the first time
   (about 10 s) when the Debian files are present.
2. Online, `prepare(allow_download=True)` (or `scripts/prepare_data.py --allow_download`): the
   same builder fetches the official files with TFDS's download manager (checksums verified)
   instead of reading Debian's; no TensorFlow needed. Never done implicitly.

The data directory is `data_dir`, else `$FASTDFKD_DATA_DIR`, else TFDS's default
(`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
"""

from __future__ import annotations

import gzip
import os
import urllib.parse

import numpy as np
from absl import logging

from fastdfkd_jax.data import base, tfds_arrays

TFDS_NAME = "fashion_mnist"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# Debian file-name prefixes of each split, as in the original distribution.
_DEBIAN_PREFIX = {"train": "train", "test": "t10k"}
# IDX headers: magic, count (labels) and magic, count, rows, cols (images), 4 bytes each.
_IDX_LABEL_HEADER_BYTES = 8
_IDX_IMAGE_HEADER_BYTES = 16

_IMAGE_SHAPE = (28, 28, 1)
# Mean and std of the raw [0, 1] training images (all pixels pooled, float64), computed once from
# Debian's train-images-idx3-ubyte.gz: x = idx_uint8 / 255; x.mean() = 0.28604, x.std() = 0.35302.
_MEAN = (0.2860406,)
_STD = (0.3530242,)

INFO = base.DatasetInfo(
    name="fashion_mnist",
    image_shape=_IMAGE_SHAPE,
    num_classes=10,
    mean=_MEAN,
    std=_STD,
    train_size=60000,
    test_size=10000,
)

NOT_FOUND_MESSAGE = (
    "Fashion-MNIST is not prepared in {data_dir} and Debian's files are not in {source_dir}. "
    "Install them with `sudo apt-get install dataset-fashion-mnist` (it is then prepared "
    "automatically), or, when online, prepare TFDS's download with "
    "`python scripts/prepare_data.py --dataset=fashion_mnist --allow_download "
    "--data_dir={data_dir}`."
)


def debian_files(source_dir: str) -> dict[str, tuple[str, str]]:
    """Paths `{split: (images .gz, labels .gz)}` of the Debian IDX files under `source_dir`."""
    return {
        split: (
            os.path.join(source_dir, f"{prefix}-images-idx3-ubyte.gz"),
            os.path.join(source_dir, f"{prefix}-labels-idx1-ubyte.gz"),
        )
        for split, prefix in _DEBIAN_PREFIX.items()
    }


def has_debian_files(source_dir: str) -> bool:
    """Whether all four Debian IDX files exist under `source_dir`."""
    return all(os.path.exists(p) for pair in debian_files(source_dir).values() for p in pair)


def read_idx(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read gzipped IDX files.

    Returns:
      images uint8 `[N, 28, 28, 1]` and labels uint8 `[N]`.

    """
    with gzip.open(images_path, "rb") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=_IDX_IMAGE_HEADER_BYTES)
    with gzip.open(labels_path, "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=_IDX_LABEL_HEADER_BYTES)
    images = images.reshape((-1, *_IMAGE_SHAPE))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path}: {images.shape[0]} images but {labels.shape[0]} labels.")
    return images, labels


def _debian_builder_class():
    # Defined lazily: importing TFDS takes about a second and `digits` users do not need it.
    import PIL.Image
    from tensorflow_datasets.image_classification import mnist

    class DebianFashionMNIST(mnist.FashionMNIST, skip_registration=True):
        """TFDS's `fashion_mnist` builder reading local IDX files (or downloads) without TF."""

        name = TFDS_NAME

        def __init__(self, *, source_dir: str | None, **kwargs):
            self._source_dir = source_dir
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            if self._source_dir is not None:
                files = debian_files(self._source_dir)
            else:
                # The official files (same names as Debian's), checksum-verified by TFDS;
                # `download` rather than `download_and_extract`: TFDS's extractor needs TF.
                names = debian_files("")
                urls = {
                    split: [urllib.parse.urljoin(self.URL, n) for n in pair]
                    for split, pair in names.items()
                }
                files = dl_manager.download(urls)
            return {split: self._generate_examples_from(*paths) for split, paths in files.items()}

        def _generate_examples_from(self, images_path, labels_path):
            images, labels = read_idx(images_path, labels_path)
            for index, (image, label) in enumerate(zip(images, labels, strict=True)):
                # TFDS encodes numpy images with TensorFlow but PIL images with PIL; the key is the
                # IDX index, as in the stock builder.
                yield index, {"image": PIL.Image.fromarray(image[..., 0]), "label": int(label)}

    return DebianFashionMNIST


def prepare(
    data_dir: str | None = None, *, source_dir: str | None = None, allow_download: bool = False
) -> str:
    """Prepare TFDS's `fashion_mnist` in `data_dir` (array_record files); no-op if prepared.

    Args:
      data_dir: TFDS data directory (default: see module docstring).
      source_dir: directory of Debian's IDX files (default `DEBIAN_DIR`).
      allow_download: if the Debian files are absent, download the official files with TFDS's
        download manager (online only; no TensorFlow needed).

    Returns:
      The prepared dataset's versioned directory.

    Raises:
      DatasetNotFoundError: no Debian files and `allow_download` is false.

    """
    data_dir = base.resolve_data_dir(data_dir)
    source_dir = DEBIAN_DIR if source_dir is None else source_dir
    if has_debian_files(source_dir):
        builder = _debian_builder_class()(data_dir=data_dir, source_dir=source_dir)
    elif allow_download:
        builder = _debian_builder_class()(data_dir=data_dir, source_dir=None)
    else:
        raise base.DatasetNotFoundError(
            NOT_FOUND_MESSAGE.format(data_dir=data_dir, source_dir=source_dir)
        )
    if not builder.is_prepared():
        logging.info("Preparing %s in %s.", TFDS_NAME, data_dir)
        builder.download_and_prepare(file_format="array_record")
    return os.fspath(builder.data_dir)


def is_prepared(data_dir: str | None = None) -> bool:
    """Whether `fashion_mnist` is prepared in `data_dir`."""
    import tensorflow_datasets as tfds

    return tfds.builder(TFDS_NAME, data_dir=base.resolve_data_dir(data_dir)).is_prepared()


def load(split: str, data_dir: str | None = None, *, source_dir: str | None = None) -> base.Split:
    """Load a split, preparing it from Debian's files first if needed.

    Returns:
      `{'image': float32 [N, 28, 28, 1] in [0, 1], 'label': int32 [N]}`, N = 60000 / 10000.

    Raises:
      DatasetNotFoundError: not prepared and Debian's files are absent.

    """
    base.check_split(split)
    data_dir = base.resolve_data_dir(data_dir)
    source_dir = DEBIAN_DIR if source_dir is None else source_dir
    if not is_prepared(data_dir):
        prepare(data_dir, source_dir=source_dir)
    return tfds_arrays.load_tfds_split(
        TFDS_NAME,
        split,
        data_dir,
        not_found_message=NOT_FOUND_MESSAGE.format(data_dir=data_dir, source_dir=source_dir),
    )
