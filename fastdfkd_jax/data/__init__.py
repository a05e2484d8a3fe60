"""Datasets (a name registry) and jittable augmentation.

`get_info(name)` gives a dataset's metadata, `load_split(name, split, data_dir=None)` its images as
`float32 [N, H, W, C]` in `[0, 1]` and labels as `int32 [N]`. Augmentation lives in
`fastdfkd_jax.data.augment`.
"""

from fastdfkd_jax.data.base import DATA_DIR_ENV, DatasetInfo, DatasetNotFoundError
from fastdfkd_jax.data.registry import DATASETS, get_info, load_split

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "DatasetNotFoundError",
    "get_info",
    "load_split",
]
