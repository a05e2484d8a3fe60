"""Tests of the dataset registry: digits, Fashion-MNIST from Debian's files, CIFAR via mock data."""

import numpy as np
import pytest

from fastdfkd_jax import data
from fastdfkd_jax.data import digits


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="cifar10.*digits"):
        data.get_info("mnist")
    with pytest.raises(ValueError, match="choose one of"):
        data.load_split("mnist", "train")
    with pytest.raises(ValueError, match="'valid'"):
        data.load_split("digits", "valid")


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_info_is_consistent(name):
    info = data.get_info(name)
    assert info.name == name
    assert len(info.mean) == len(info.std) == info.image_shape[-1]
    assert all(0 < s < 1 for s in info.std) and all(0 < m < 1 for m in info.mean)


def test_digits_sizes_dtypes_range():
    info = data.get_info("digits")
    for split, size in (("train", info.train_size), ("test", info.test_size)):
        d = data.load_split("digits", split)
        assert d["image"].shape == (size, *info.image_shape)
        assert d["image"].dtype == np.float32 and d["label"].dtype == np.int32
        assert d["image"].min() == 0.0 and d["image"].max() == 1.0
        assert set(np.unique(d["label"])) == set(range(info.num_classes))
    assert (info.train_size, info.test_size) == (1437, 360)


def test_digits_is_stratified():
    train = np.bincount(data.load_split("digits", "train")["label"])
    test = np.bincount(data.load_split("digits", "test")["label"])
    total = train + test
    # Stratification puts each class's share within one example of 20% in the test split.
    np.testing.assert_array_less(np.abs(test - digits.TEST_FRACTION * total), 1.0 + 1e-9)


def test_digits_is_deterministic_and_copies():
    a = data.load_split("digits", "train")
    a["image"][:] = -1  # Mutating a result must not change later loads.
    digits._splits.cache_clear()
    b = data.load_split("digits", "train")
    c = data.load_split("digits", "train")
    np.testing.assert_array_equal(b["image"], c["image"])
    np.testing.assert_array_equal(b["label"], c["label"])
    assert b["image"].min() == 0.0
    # A fixed fingerprint of the split: the first labels never change.
    np.testing.assert_array_equal(b["label"][:8], _FIRST_DIGITS_TRAIN_LABELS)


def test_digits_mean_std_constants():
    x = data.load_split("digits", "train")["image"].astype(np.float64)
    info = data.get_info("digits")
    np.testing.assert_allclose(info.mean, [x.mean()], rtol=1e-5)
    np.testing.assert_allclose(info.std, [x.std()], rtol=1e-5)


_FIRST_DIGITS_TRAIN_LABELS = [3, 9, 1, 3, 1, 9, 4, 4]  # train_test_split(random_state=0)
