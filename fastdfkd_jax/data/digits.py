"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set), the embedded default.

`sklearn.datasets.load_digits` ships with scikit-learn, so this dataset needs no download. It has
1,797 images of 8x8 pixels with integer values 0..16; we divide by 16 to get `[0, 1]` and add a
channel axis. It has no official split: we make a stratified 80/20 train/test split with
`sklearn.model_selection.train_test_split(test_size=0.2, random_state=0, stratify=labels)`, which is
deterministic (1,437 train / 360 test, every class within one example of its share).
"""

from __future__ import annotations

import functools

import numpy as np

from fastdfkd_jax.data import base

# `load_digits` pixel values are counts of set pixels in 4x4 blocks of the 32x32 originals: 0..16.
_MAX_PIXEL_VALUE = 16.0
TEST_FRACTION = 0.2
SPLIT_SEED = 0

# Mean and std of the raw [0, 1] training split above (all pixels pooled, float64), computed once:
#   x = load_split('digits', 'train')['image'].astype(np.float64); x.mean(), x.std()
_MEAN = (0.3053834,)
_STD = (0.3761192,)

INFO = base.DatasetInfo(
    name="digits",
    image_shape=(8, 8, 1),
    num_classes=10,
    mean=_MEAN,
    std=_STD,
    train_size=1437,
    test_size=360,
)


@functools.cache
def _splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    # Imported lazily to keep `import fastdfkd_jax.data` cheap.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / _MAX_PIXEL_VALUE).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=digits.target,
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def load(split: str, data_dir: str | None = None) -> base.Split:
    """Load a split of `digits` (`data_dir` is ignored: the data ships with scikit-learn).

    Returns:
      `{'image': float32 [N, 8, 8, 1] in [0, 1], 'label': int32 [N]}`, N = 1437 / 360.

    """
    del data_dir
    base.check_split(split)
    images, labels = _splits()[split]
    # Copies, so callers may modify the arrays without corrupting the cache.
    return base.as_split(images.copy(), labels.copy())
