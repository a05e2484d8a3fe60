"""A run's data: image-size override, test split checks before training, the smoke stand-ins."""

import numpy as np
import pytest

from fastdfkd_jax import checkpoint, data, run_data, smoke
from fastdfkd_jax.data import base, streaming
from tests.conftest import load_config


def test_dataset_info_takes_the_run_image_size():
    config = load_config("dfkd_imagenet.py:runlocal")
    info = run_data.dataset_info(config)
    assert info.image_shape == (32, 32, 3) and info.num_classes == 1000
    assert run_data.dataset_info(load_config("dfkd_imagenet.py")).image_shape == (224, 224, 3)
    nyu = run_data.dataset_info(load_config("dfkd_nyuv2.py:runlocal"))
    assert nyu.image_shape == (32, 32, 3) and nyu.task == "segmentation"
    cifar = load_config("dfkd_cifar.py:runlocal")
    cifar.dataset.image_size = 16
    with pytest.raises(ValueError, match=r"dataset.image_size=16: cifar10 has a fixed size"):
        run_data.dataset_info(cifar)


def classification(images, labels):
    return streaming.ArraySource({"image": np.asarray(images), "label": np.asarray(labels)})


def test_check_test_split_names_bad_images_and_labels():
    info = base.DatasetInfo("toy", (4, 4, 3), 5, (0.5,) * 3, (0.5,) * 3, 2, 2)
    good = np.zeros((2, 4, 4, 3), np.uint8)
    run_data.check_test_split(classification(good, [0, 4]), info)
    cases = {
        r"image of shape \(4, 4, 1\), expected \[H, W, 3\]": (np.zeros((2, 4, 4, 1)), [0, 1]),
        r"image of shape \(5, 4, 3\), expected \(4, 4, 3\)": (np.zeros((2, 5, 4, 3)), [0, 1]),
        r"example 1: label 5 outside 0..4": (good, [0, 5]),
    }
    for message, (images, labels) in cases.items():
        with pytest.raises(ValueError, match=message):
            run_data.check_test_split(classification(images, labels), info)
    with pytest.raises(ValueError, match="test split is empty"):
        run_data.check_test_split(classification(good[:0], []), info)


def test_check_test_split_of_label_maps():
    info = base.DatasetInfo("seg", (4, 4, 3), 3, (0.5,) * 3, (0.5,) * 3, 1, 1, task="segmentation")
    images = np.zeros((1, 6, 7, 3), np.uint8)  # whole images of any size
    labels = np.full((1, 6, 7), base.IGNORE_LABEL, np.uint8)
    labels[0, :2] = 2
    run_data.check_test_split(classification(images, labels), info)
    labels[0, 3, 3] = 3
    with pytest.raises(ValueError, match="label value 3 outside 0..2 and 255"):
        run_data.check_test_split(classification(images, labels), info)
    with pytest.raises(ValueError, match=r"label map of shape \(6, 6\) for an image of \(6, 7\)"):
        run_data.check_test_split(classification(images, labels[:, :, :6]), info)


def test_a_data_dir_without_the_layout_names_what_is_missing(tmp_path):
    config = load_config("dfkd_nyuv2.py")
    config.dataset.data_dir = str(tmp_path)
    info = run_data.dataset_info(config)
    with pytest.raises(data.DatasetNotFoundError, match=r"image/test \(the test images\)"):
        run_data.open_test_split(config, info, str(tmp_path))
    config = load_config("dfkd_imagenet.py")
    config.dataset.name, config.dataset.data_dir = "imagenet2012_folder", str(tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match=r"val is not a directory"):
        run_data.open_test_split(config, run_data.dataset_info(config), str(tmp_path))


def test_smoke_imagenet_split_is_mock_data_in_the_evaluation_view(tmp_path):
    config = load_config("dfkd_imagenet.py:runlocal")
    info = run_data.dataset_info(config)
    source = run_data.open_test_split(config, info, str(tmp_path))
    assert len(source) == smoke.NUM_EXAMPLES
    run_data.check_test_split(source, info)
    assert source[0]["image"].shape == (32, 32, 3) and source[0]["image"].dtype == np.uint8


def test_smoke_nyuv2_split_is_read_by_the_real_loader(tmp_path):
    config = load_config("dfkd_nyuv2.py:runlocal")
    info = run_data.dataset_info(config)
    source = run_data.open_test_split(config, info, str(tmp_path))
    assert len(source) == smoke.NUM_EXAMPLES
    run_data.check_test_split(source, info)
    example = source[0]
    assert example["image"].shape == (256, 341, 3) and example["label"].shape == (256, 341)
    values = set(np.unique(example["label"]).tolist())
    assert base.IGNORE_LABEL in values and len(values - {base.IGNORE_LABEL}) > 1
    again = run_data.open_test_split(config, info, str(tmp_path))  # a resumed run: same files
    np.testing.assert_array_equal(again[3]["label"], source[3]["label"])


def test_smoke_needs_a_mocked_dataset_and_saves_a_loadable_teacher(tmp_path):
    with pytest.raises(ValueError, match="smoke_test has generated data for"):
        smoke.mock_test_split("cifar10", str(tmp_path), 2, 32)
    info = run_data.dataset_info(load_config("dfkd_nyuv2.py:runlocal"))
    directory = smoke.init_teacher("deeplabv3_tiny", info, str(tmp_path), seed=0)
    meta, variables = checkpoint.load_teacher(directory, arch="deeplabv3_tiny", num_classes=13)
    assert tuple(meta["image_shape"]) == (32, 32, 3) and "batch_stats" in variables
    assert smoke.init_teacher("deeplabv3_tiny", info, str(tmp_path), seed=1) == directory
