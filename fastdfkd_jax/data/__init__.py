"""Datasets (a name registry) and jittable augmentation.

`get_info(name)` gives a dataset's metadata, `load_split(name, split, data_dir=None)` the images of
a small dataset as `float32 [N, H, W, C]` in `[0, 1]` and labels as `int32 [N]`;
`open_split(name, split, data_dir=None)` gives random access to any dataset's examples (ImageNet
and NYUv2 only this way) and `iterate_batches(source, batch_size)` batches them. Augmentation lives
in `fastdfkd_jax.data.augment`.
"""

from fastdfkd_jax.data.base import DATA_DIR_ENV, IGNORE_LABEL, DatasetInfo, DatasetNotFoundError
from fastdfkd_jax.data.registry import DATASETS, get_info, is_streamed, load_split, open_split
from fastdfkd_jax.data.streaming import ExampleSource, iterate_batches

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "IGNORE_LABEL",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ExampleSource",
    "get_info",
    "is_streamed",
    "iterate_batches",
    "load_split",
    "open_split",
]
