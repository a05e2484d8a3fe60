"""CIFAR-10 and CIFAR-100 (32x32 RGB, 50,000 train / 10,000 test) through `tfds.data_source`.

Prepare them once, then `load_split('cifar10', ...)` reads them (decoded once, cached as `.npz`).
TFDS's stock CIFAR builders need TensorFlow (their extractor and binary reader use `tf.io.gfile`,
their PNG encoder `tf.image`), so `prepare` uses builder subclasses that override only the split
generators: they take the official binary archive (downloaded by TFDS's download manager, which
checks its checksum and needs no TensorFlow, or given as a local file), read it with `tarfile` and
numpy and hand PIL images to TFDS. The result is the standard `cifar10`/`cifar100` dataset (same
name, version, features and keys, hence the same example order as the stock builder):

    python scripts/prepare_data.py --dataset=cifar10 [--data_dir=DIR] [--archive=ARCHIVE.tar.gz]

With TensorFlow installed, the stock command gives the same dataset:

    python -c "import tensorflow_datasets as tfds; \
      tfds.builder('cifar10').download_and_prepare(file_format='array_record')"
"""

from __future__ import annotations

import os
import tarfile

import numpy as np
from absl import logging

from fastdfkd_jax.data import base, tfds_arrays

# Per-channel mean/std of the training sets, as in the original code (Fast-Datafree registry.py).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_IMAGE_SHAPE = (32, 32, 3)
_TRAIN_SIZE = 50000
_TEST_SIZE = 10000

CIFAR10_INFO = base.DatasetInfo(
    name="cifar10",
    image_shape=_IMAGE_SHAPE,
    num_classes=10,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    train_size=_TRAIN_SIZE,
    test_size=_TEST_SIZE,
)
CIFAR100_INFO = base.DatasetInfo(
    name="cifar100",
    image_shape=_IMAGE_SHAPE,
    num_classes=100,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    train_size=_TRAIN_SIZE,
    test_size=_TEST_SIZE,
)

NOT_FOUND_MESSAGE = (
    "{name} is not prepared in {data_dir}. Prepare it once (downloads about 170 MB) with "
    "`python scripts/prepare_data.py --dataset={name} --data_dir={data_dir}` (add "
    "--archive=PATH to use an already downloaded binary archive), or, with TensorFlow installed, "
    "`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
    "data_dir='{data_dir}').download_and_prepare(file_format='array_record')\"`."
)
# Each binary record: label byte(s), then the image as 3 planes of 32x32 (CHW).
_PIXELS_PER_IMAGE = int(np.prod(_IMAGE_SHAPE))


def _read_binary_records(data: bytes, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse CIFAR binary records.

    Args:
      data: the bytes of one `.bin` file.
      num_labels: label bytes per record (1 for CIFAR-10; coarse and fine for CIFAR-100).

    Returns:
      labels uint8 `[N, num_labels]` and images uint8 `[N, 32, 32, 3]`.

    """
    records = np.frombuffer(data, np.uint8).reshape(-1, num_labels + _PIXELS_PER_IMAGE)
    height, width, channels = _IMAGE_SHAPE
    images = records[:, num_labels:].reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return records[:, :num_labels], images


def _builder_class(name: str):
    # Defined lazily: importing TFDS takes about a second and `digits` users do not need it.
    import PIL.Image
    from tensorflow_datasets.image_classification import cifar

    stock = {"cifar10": cifar.Cifar10, "cifar100": cifar.Cifar100}[name]

    class ArchiveCifar(stock, skip_registration=True):
        """TFDS's CIFAR builder reading the binary archive with `tarfile` instead of TensorFlow."""

        def __init__(self, *, archive: str | None = None, **kwargs):
            self._archive = archive
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            cifar_info = self._cifar_info
            # `download` (not `download_and_extract`): TFDS's extractor needs TensorFlow.
            archive = self._archive or dl_manager.download(cifar_info.url)
            with tarfile.open(archive, "r:gz") as tar:
                files = {
                    os.path.relpath(member.name, cifar_info.prefix): tar.extractfile(member).read()
                    for member in tar.getmembers()
                    if member.isfile() and member.name.startswith(cifar_info.prefix)
                }
            for label_key, label_file in zip(
                cifar_info.label_keys, cifar_info.label_files, strict=True
            ):
                names = [n for n in files[label_file].decode().split("\n") if n.strip()]
                self.info.features[label_key].names = names
            return {
                "train": self._examples("train_", [files[f] for f in cifar_info.train_files]),
                "test": self._examples("test_", [files[f] for f in cifar_info.test_files]),
            }

        def _examples(self, split_prefix, contents):
            # Keys and ids as the stock `_generate_examples`, so the example order is the same.
            label_keys = self._cifar_info.label_keys
            index = 0
            for data in contents:
                labels, images = _read_binary_records(data, len(label_keys))
                for label, image in zip(labels, images, strict=True):
                    record = {key: int(value) for key, value in zip(label_keys, label, strict=True)}
                    record["id"] = f"{split_prefix}{index:05d}"
                    # TFDS encodes numpy images with TensorFlow but PIL images with PIL.
                    record["image"] = PIL.Image.fromarray(image)
                    yield index, record
                    index += 1

    ArchiveCifar.name = name
    return ArchiveCifar


def prepare(name: str, data_dir: str | None = None, *, archive: str | None = None) -> str:
    """Prepare `cifar10` or `cifar100` in `data_dir` (array_record files); no-op if prepared.

    Args:
      name: `'cifar10'` or `'cifar100'`.
      data_dir: TFDS data directory (default: `$FASTDFKD_DATA_DIR`, else TFDS's default).
      archive: a local copy of the official binary archive (`cifar-10-binary.tar.gz` /
        `cifar-100-binary.tar.gz`); if None, TFDS downloads it (online only).

    Returns:
      The prepared dataset's versioned directory.

    """
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"Unknown CIFAR dataset {name!r}; choose 'cifar10' or 'cifar100'.")
    data_dir = base.resolve_data_dir(data_dir)
    builder = _builder_class(name)(data_dir=data_dir, archive=archive)
    if not builder.is_prepared():
        logging.info("Preparing %s in %s from %s.", name, data_dir, archive or "a download")
        builder.download_and_prepare(file_format="array_record")
    return os.fspath(builder.data_dir)


def _load(name: str, split: str, data_dir: str | None) -> base.Split:
    base.check_split(split)
    data_dir = base.resolve_data_dir(data_dir)
    return tfds_arrays.load_tfds_split(
        name,
        split,
        data_dir,
        not_found_message=NOT_FOUND_MESSAGE.format(name=name, data_dir=data_dir),
    )


def load_cifar10(split: str, data_dir: str | None = None) -> base.Split:
    """Load a CIFAR-10 split: `{'image': float32 [N, 32, 32, 3] in [0, 1], 'label': int32 [N]}`."""
    return _load("cifar10", split, data_dir)


def load_cifar100(split: str, data_dir: str | None = None) -> base.Split:
    """Load a CIFAR-100 split (fine labels, 100 classes); same format as `load_cifar10`."""
    return _load("cifar100", split, data_dir)
