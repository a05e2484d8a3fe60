"""The experiment end to end on tiny budgets, its table, and the TFDS Wine Quality path."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import spline_diabetes, spline_digits, spline_wine_quality
from spline import experiment, wine_quality


def _tiny(config):
    config.num_seeds = 1
    config.train.epochs = 2
    config.mars.max_terms = 9
    return config


def test_summarize_known_values():
    curves = {
        "mars": np.array([[0.5, 0.3, 0.2, 0.2]]),
        "he": np.array([[2.0, 1.0, 0.4, 0.3]]),
        "glorot": np.array([[1.5, 0.9, 0.6, 0.35]]),
    }
    times = {m: np.array([[0.0, 1.0, 2.0, 3.0]]) for m in curves}
    init = {"mars": np.array([0.5]), "he": np.array([0.0]), "glorot": np.array([0.0])}
    table = experiment.summarize(curves, times, init)
    assert table["target"] == pytest.approx(0.3)
    assert table["methods"]["mars"]["epochs_to_target"] == 1
    assert table["methods"]["mars"]["seconds_to_target"] == pytest.approx(1.5)
    assert table["methods"]["he"]["epochs_to_target"] == 3
    assert table["methods"]["glorot"]["epochs_to_target"] is None
    assert "not reached" in experiment.markdown_table(table, "MSE")


def test_diabetes_end_to_end(tmp_path):
    config = _tiny(spline_diabetes.get_config())
    table = experiment.run(config, str(tmp_path))
    for name in ("loss_vs_epoch.png", "loss_vs_time.png", "results.md", "results.json"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["curves"]) == {"mars", "he", "glorot"}
    mars = table["methods"]["mars"]
    # The converted network starts exactly at the MARS fit: far below a random start.
    assert mars["initial_loss_mean"] < 0.8 < table["methods"]["he"]["initial_loss_mean"]
    assert table["mars"]["terms"] >= 3


def test_digits_one_hot_fit_and_logistic_refit():
    config = _tiny(spline_digits.get_config())
    data = experiment.load_data(config.dataset)
    keep = np.isin(data.y_train, [0, 1, 2])  # three classes keep the fit small
    data = experiment.Data(
        data.x_train[keep][:300], data.y_train[keep][:300], data.x_test, data.y_test, True, 3
    )
    cols = np.ptp(data.x_train, 0) > 0
    data.x_train, data.x_test = data.x_train[:, cols], data.x_test[:, cols]
    prep = experiment.prepare(data)
    params, seconds, model = experiment.mars_init(config, data, prep, jax.random.key(0))
    assert model.n_outputs_ == 3 and seconds > 0
    logits = experiment.MLP(features=(*config.model.widths, 3)).apply(
        {"params": params}, prep.z_train
    )
    # The refit output layer classifies the training digits almost perfectly.
    assert np.mean(np.argmax(np.asarray(logits), 1) == data.y_train) > 0.95


def test_unknown_names():
    config = _tiny(spline_diabetes.get_config())
    config.dataset.name = "nope"
    with pytest.raises(ValueError, match="unknown dataset"):
        experiment.load_data(config.dataset)
    config = _tiny(spline_diabetes.get_config())
    config.methods = ("xavier",)
    with pytest.raises(ValueError, match="unknown method"):
        experiment.run(config, "/tmp/unused")


def test_wine_quality_through_tfds_mock(tmp_path):
    config = _tiny(spline_wine_quality.get_config())
    config.methods = ("mars",)
    with tfds.testing.mock_data(num_examples=120, policy=tfds.testing.MockPolicy.USE_CODE):
        data = experiment.load_data(config.dataset)
        assert data.x_train.shape[1] <= len(wine_quality.FEATURES)
        assert data.x_train.shape[0] + data.x_test.shape[0] == 120
        table = experiment.run(config, str(tmp_path))
    assert np.isfinite(table["methods"]["mars"]["final_loss_mean"])


def test_wine_quality_builder_parses_uci_csv(tmp_path):
    header = ";".join(f'"{n}"' for n in wine_quality.FEATURES) + ';"quality"'
    rows = [
        "7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6",
        "6.3;0.3;0.34;1.6;0.049;14;132;0.994;3.3;0.49;9.5;5",
    ]
    path = tmp_path / "w.csv"
    path.write_text("\n".join([header.replace('"', ""), *rows]) + "\n")
    builder = wine_quality.WineQualityNp(config="white", data_dir=str(tmp_path / "d"))
    examples = list(builder._generate_examples(str(path)))
    assert [e[1]["quality"] for e in examples] == [6, 5]
    assert examples[0][1]["features"]["alcohol"] == pytest.approx(8.8)
