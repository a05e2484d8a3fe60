"""CIFAR-10 and CIFAR-100 (32x32 RGB, 50,000 train / 10,000 test) through `tfds.data_source`.

Prepare them once (see the not-found message); then `load_split('cifar10', ...)` reads them.
"""

from __future__ import annotations

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
    "{name} is not prepared in {data_dir}. When online, prepare it with "
    "`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
    "data_dir='{data_dir}').download_and_prepare(file_format='array_record')\"` "
    "(TFDS's CIFAR builder needs TensorFlow: `pip install tensorflow-cpu`)."
)


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
