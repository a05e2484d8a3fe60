"""Tests of the dataset registry: digits, Fashion-MNIST from Debian's files, CIFAR via mock data."""

import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fastdfkd_jax import data
from fastdfkd_jax.data import base, cifar, digits, fashion_mnist


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


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert base.resolve_data_dir(None) == str(tmp_path)
    assert base.resolve_data_dir("/elsewhere") == "/elsewhere"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert base.resolve_data_dir(None) == os.path.expanduser(tfds.core.constants.DATA_DIR)


# --- Fashion-MNIST from Debian's IDX files -------------------------------------------------------

_NO_DEBIAN = not fashion_mnist.has_debian_files(fashion_mnist.DEBIAN_DIR)
_NO_DEBIAN_REASON = (
    f"Debian's Fashion-MNIST files are not in {fashion_mnist.DEBIAN_DIR} "
    "(apt-get install dataset-fashion-mnist)"
)


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    """A data dir with `fashion_mnist` prepared from Debian's files (about 10 s), once a session."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    fashion_mnist.prepare(data_dir)
    return data_dir


def _idx(split):
    images_path, labels_path = fashion_mnist.debian_files(fashion_mnist.DEBIAN_DIR)[split]
    return fashion_mnist.read_idx(images_path, labels_path)


def _rows(images, labels):
    # One bytes key per (image, label) pair, to compare datasets whose order differs.
    flat = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return sorted(row.tobytes() for row in flat.astype(np.uint8))


@pytest.mark.skipif(_NO_DEBIAN, reason=_NO_DEBIAN_REASON)
def test_fashion_mnist_from_debian_files(fashion_dir):
    info = data.get_info("fashion_mnist")
    train = tfds.data_source("fashion_mnist", split="train", data_dir=fashion_dir, download=False)
    assert len(train) == info.train_size == 60000
    # A few decoded training examples are byte-identical to an IDX image with the same label
    # (TFDS stores examples shuffled by key, so positions differ from the IDX order).
    idx_images, idx_labels = _idx("train")
    by_bytes = {img.tobytes(): int(lab) for img, lab in zip(idx_images, idx_labels, strict=True)}
    for i in (0, 1, 12345, 59999):
        example = train[i]
        assert by_bytes[example["image"].tobytes()] == example["label"]

    test = data.load_split("fashion_mnist", "test", fashion_dir)
    assert test["image"].shape == (info.test_size, 28, 28, 1) == (10000, 28, 28, 1)
    assert test["image"].dtype == np.float32 and test["label"].dtype == np.int32
    assert 0.0 <= test["image"].min() and test["image"].max() <= 1.0
    assert set(np.unique(test["label"])) == set(range(10))
    # The whole test split equals the IDX file as a set of (image, label) pairs.
    pixels = np.round(test["image"] * 255).astype(np.uint8)
    assert _rows(pixels, test["label"]) == _rows(*_idx("test"))
    # The second load reads the decoded cache and gives the same arrays.
    cache = os.path.join(fashion_dir, "fashion_mnist", "3.0.1", "fastdfkd_test.npz")
    assert os.path.exists(cache)
    again = data.load_split("fashion_mnist", "test", fashion_dir)
    np.testing.assert_array_equal(again["image"], test["image"])
    np.testing.assert_array_equal(again["label"], test["label"])


@pytest.mark.skipif(_NO_DEBIAN, reason=_NO_DEBIAN_REASON)
def test_fashion_mnist_mean_std_constants():
    x = _idx("train")[0].astype(np.float64) / 255
    info = data.get_info("fashion_mnist")
    np.testing.assert_allclose(info.mean, [x.mean()], rtol=1e-5)
    np.testing.assert_allclose(info.std, [x.std()], rtol=1e-5)


def test_fashion_mnist_missing_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_split("fashion_mnist", "train", tmp_path / "tfds")


# --- CIFAR through tfds.data_source ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_with_mock_data(name, tmp_path):
    info = data.get_info(name)
    num_examples = 6
    with tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE):
        split = data.load_split(name, "train", tmp_path)
    assert split["image"].shape == (num_examples, *info.image_shape)
    assert split["image"].dtype == np.float32 and split["label"].dtype == np.int32
    assert 0.0 <= split["image"].min() and split["image"].max() <= 1.0
    assert ((0 <= split["label"]) & (split["label"] < info.num_classes)).all()
    # Mock examples are never cached.
    assert not list(tmp_path.rglob("*.npz"))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_says_how_to_get_it(name, tmp_path):
    with pytest.raises(
        data.DatasetNotFoundError, match=f"prepare_data.py --dataset={name}.*download_and_prepare"
    ):
        data.load_split(name, "test", tmp_path)


def _fake_cifar_archive(path, name, per_file=3):
    """Writes a tiny binary CIFAR archive laid out as the official one; returns its examples."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        prefix, num_labels, label_files = "cifar-10-batches-bin/", 1, {"batches.meta.txt": 10}
        splits = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    else:
        prefix, num_labels = "cifar-100-binary/", 2
        label_files = {"coarse_label_names.txt": 20, "fine_label_names.txt": 100}
        splits = {"train": ["train.bin"], "test": ["test.bin"]}
    expected = {}
    with tarfile.open(path, "w:gz") as tar:

        def add(file_name, content):
            member = tarfile.TarInfo(prefix + file_name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))

        for split, files in splits.items():
            expected[split] = []
            for file_name in files:
                labels = rng.integers(0, 10, (per_file, num_labels), dtype=np.uint8)
                chw = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
                add(file_name, np.concatenate([labels, chw.reshape(per_file, -1)], 1).tobytes())
                # The last label byte is the (fine) label; images are stored channel-first.
                expected[split] += [
                    (int(lab[-1]), img.transpose(1, 2, 0).tobytes())
                    for lab, img in zip(labels, chw, strict=True)
                ]
        for file_name, count in label_files.items():
            add(file_name, "".join(f"class{i}\n" for i in range(count)).encode())
    return expected


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_prepared_from_archive_without_tensorflow(name, tmp_path):
    archive = str(tmp_path / f"{name}.tar.gz")
    expected = _fake_cifar_archive(archive, name)
    cifar.prepare(name, str(tmp_path / "tfds"), archive=archive)
    for split in ("train", "test"):
        loaded = data.load_split(name, split, tmp_path / "tfds")
        pixels = np.round(loaded["image"] * 255).astype(np.uint8)
        got = sorted(
            (int(lab), img.tobytes()) for lab, img in zip(loaded["label"], pixels, strict=True)
        )
        assert got == sorted(expected[split])
