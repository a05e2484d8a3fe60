"""The study's data registry, its three-way split and standardization."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from spline import data as data_lib
from spline import preprocess, wine_quality


def test_split_sizes_and_disjoint_rows(spline_config):
    config = spline_config("spline_diabetes")
    data = data_lib.load_data(config.dataset)
    n = 442
    n_test = round(0.2 * n)
    assert len(data.x_test) == n_test
    assert len(data.x_val) == round(0.2 * (n - n_test))
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == n
    rows = [{r.tobytes() for r in x} for x in (data.x_train, data.x_val, data.x_test)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    # The same split every time (fixed seed).
    again = data_lib.load_data(config.dataset)
    np.testing.assert_array_equal(again.x_val, data.x_val)


def test_split_drops_columns_constant_on_training_rows():
    x = np.stack([np.arange(20.0), np.zeros(20), np.arange(20.0) ** 2], 1)
    data = data_lib.split(
        x, np.arange(20.0), test_fraction=0.25, val_fraction=0.2, seed=0, classification=False
    )
    assert data.x_train.shape[1] == data.x_val.shape[1] == data.x_test.shape[1] == 2


@pytest.mark.parametrize("key", ["test_fraction", "val_fraction"])
def test_bad_fractions(key):
    kwargs = dict(test_fraction=0.2, val_fraction=0.2, seed=0, classification=False)
    kwargs[key] = 1.0
    with pytest.raises(ValueError, match=key):
        data_lib.split(np.ones((10, 2)), np.ones(10), **kwargs)


def test_unknown_dataset_is_named(spline_config):
    config = spline_config("spline_diabetes")
    config.dataset.name = "abalone"
    with pytest.raises(ValueError, match="'abalone'"):
        data_lib.load_data(config.dataset)


def test_digits_labels_and_global_scale(spline_config):
    config = spline_config("spline_digits")
    data = data_lib.load_data(config.dataset)
    assert data.classification and data.num_classes == 10
    col = preprocess.prepare(data, "column")
    glob = preprocess.prepare(data, "global")
    assert np.ptp(glob.x_std) == 0 and np.ptp(col.x_std) > 0
    # A pixel almost always 0 in training no longer gives test inputs of tens of stds.
    assert np.abs(col.z_test).max() > 20 > 5 > np.abs(glob.z_test).max()
    np.testing.assert_allclose(glob.z_train.mean(0), 0, atol=1e-5)
    assert glob.t_train.dtype == np.int32 and glob.outputs == 10
    with pytest.raises(ValueError, match="'minmax'"):
        preprocess.prepare(data, "minmax")


def test_regression_targets_standardized_with_training_statistics(spline_config):
    data = data_lib.load_data(spline_config("spline_diabetes").dataset)
    prep = preprocess.prepare(data)
    assert prep.t_train.shape == (len(data.x_train), 1)
    np.testing.assert_allclose(prep.t_train.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(prep.t_train.std(), 1, rtol=1e-5)
    ym, ys = data.y_train.mean(), data.y_train.std()
    np.testing.assert_allclose(prep.t_test[:, 0], (data.y_test - ym) / ys, rtol=1e-5)


def test_wine_quality_through_tfds_mock(spline_config):
    config = spline_config("spline_wine_quality", "quick")
    with tfds.testing.mock_data(num_examples=120, policy=tfds.testing.MockPolicy.USE_CODE):
        data = data_lib.load_data(config.dataset)
    assert data.x_train.shape[1] <= len(wine_quality.FEATURES)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 120


def test_wine_quality_builder_parses_uci_csv(tmp_path):
    header = ";".join(wine_quality.FEATURES) + ";quality"
    rows = [
        "7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6",
        "6.3;0.3;0.34;1.6;0.049;14;132;0.994;3.3;0.49;9.5;5",
    ]
    path = tmp_path / "w.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    builder = wine_quality.WineQualityNp(config="white", data_dir=str(tmp_path / "d"))
    examples = list(builder._generate_examples(str(path)))
    assert [e[1]["quality"] for e in examples] == [6, 5]
    assert examples[0][1]["features"]["alcohol"] == pytest.approx(8.8)
