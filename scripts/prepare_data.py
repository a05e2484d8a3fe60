"""Prepares a dataset of the registry as TFDS array_record files, without TensorFlow.

Examples:
  # Fashion-MNIST from Debian's package (apt-get install dataset-fashion-mnist), offline:
  python scripts/prepare_data.py --dataset=fashion_mnist
  # CIFAR-10 downloaded by TFDS (online), or from a local copy of the binary archive:
  python scripts/prepare_data.py --dataset=cifar10
  python scripts/prepare_data.py --dataset=cifar100 --archive=/path/cifar-100-binary.tar.gz

The data directory is --data_dir, else $FASTDFKD_DATA_DIR, else TFDS's default
(`$TFDS_DATA_DIR` or `~/tensorflow_datasets`). After preparing, both splits are decoded once and
cached as `.npz` next to the TFDS files, so later loads take well under a second.

"""

import time

from absl import app, flags, logging

from fastdfkd_jax import data
from fastdfkd_jax.data import base, cifar, fashion_mnist

_DATASET = flags.DEFINE_enum(
    "dataset", None, ["fashion_mnist", "cifar10", "cifar100"], "Dataset to prepare."
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
    else:
        path = cifar.prepare(name, data_dir, archive=_ARCHIVE.value)
    logging.info("Prepared %s in %s (%.1f s).", name, path, time.perf_counter() - start)
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
