"""Prepares a dataset of the registry as TFDS array_record files, without TensorFlow.

Examples:
  # Fashion-MNIST from Debian's package (apt-get install dataset-fashion-mnist), offline:
  python scripts/prepare_data.py --dataset=fashion_mnist
  # CIFAR-10 downloaded by TFDS (online), or from a local copy of the binary archive:
  python scripts/prepare_data.py --dataset=cifar10
  python scripts/prepare_data.py --dataset=cifar100 --archive=/path/cifar-100-binary.tar.gz
  # ImageNet from its manual download (ILSVRC2012_img_{train,val}.tar in --manual_dir, by default
  # <data_dir>/downloads/manual); the train tar alone takes hours:
  python scripts/prepare_data.py --dataset=imagenet2012 --manual_dir=/path/to/tars

The data directory is --data_dir, else $FASTDFKD_DATA_DIR, else TFDS's default
(`$TFDS_DATA_DIR` or `~/tensorflow_datasets`). After preparing, both splits of the small datasets
are decoded once and cached as `.npz` next to the TFDS files, so later loads take well under a
second; ImageNet is read example by example (`data.open_split`) and only opened to check it.

"""

import time

from absl import app, flags, logging

from fastdfkd_jax import data
from fastdfkd_jax.data import base, cifar, fashion_mnist, imagenet

_DATASET = flags.DEFINE_enum(
    "dataset",
    None,
    ["fashion_mnist", "cifar10", "cifar100", "imagenet2012"],
    "Dataset to prepare.",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory.")
_ARCHIVE = flags.DEFINE_string(
    "archive",
    None,
    "CIFAR only: local binary archive (cifar-10-binary.tar.gz) instead of a download.",
)
_SOURCE_DIR = flags.DEFINE_string(
    "source_dir",
    None,
    f"Fashion-MNIST only: directory of the IDX files ({fashion_mnist.DEBIAN_DIR}).",
)
_ALLOW_DOWNLOAD = flags.DEFINE_bool(
    "allow_download",
    False,
    "Fashion-MNIST only: without the Debian files, download the official files (online).",
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir",
    None,
    "ImageNet only: folder of ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar "
    "(default <data_dir>/downloads/manual).",
)
flags.mark_flag_as_required("dataset")


def main(argv):
    del argv
    name = _DATASET.value
    data_dir = base.resolve_data_dir(_DATA_DIR.value)
    start = time.perf_counter()
    if name == "fashion_mnist":
        path = fashion_mnist.prepare(
            data_dir, source_dir=_SOURCE_DIR.value, allow_download=_ALLOW_DOWNLOAD.value
        )
    elif name == "imagenet2012":
        path = imagenet.prepare(data_dir, manual_dir=_MANUAL_DIR.value)
    else:
        path = cifar.prepare(name, data_dir, archive=_ARCHIVE.value)
    logging.info("Prepared %s in %s (%.1f s).", name, path, time.perf_counter() - start)
    if name == "imagenet2012":
        # A split whose tar was absent is left out of the prepared dataset.
        for split in base.SPLITS:
            try:
                size = len(data.open_split(name, split, data_dir))
            except ValueError as e:
                logging.warning("%s/%s is not available: %s", name, split, e)
                continue
            logging.info("%s/%s: %d examples.", name, split, size)
        return
    for split in base.SPLITS:
        start = time.perf_counter()
        size = len(data.load_split(name, split, data_dir)["label"])
        logging.info(
            "Loaded and cached %s/%s: %d examples (%.1f s).",
            name,
            split,
            size,
            time.perf_counter() - start,
        )


if __name__ == "__main__":
    app.run(main)
