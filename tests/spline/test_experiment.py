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
    config.train.lr_grid = (1e-3, 1e-2)
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
    # Every method's learning rate was chosen from the grid on validation data.
    for m in ("mars", "he", "glorot"):
        assert table["methods"][m]["learning_rate"] in config.train.lr_grid
        assert len(saved["selection"][m]["val_best"]) == len(config.train.lr_grid)
    assert "Validation MSE" in (tmp_path / "results.md").read_text()


def test_fixed_learning_rate_protocol(tmp_path):
    config = _tiny(spline_diabetes.get_config())
    config.train.select_lr = False
    config.train.learning_rate = 3e-3
    config.methods = ("he", "glorot")
    table = experiment.run(config, str(tmp_path))
    assert table["selection"] == {}
    assert {r["learning_rate"] for r in table["methods"].values()} == {3e-3}


def test_validation_split_comes_from_training_rows():
    config = spline_diabetes.get_config()
    data = experiment.load_data(config.dataset)
    inner = experiment.validation_split(data, 0.2, 0)
    train_rows = {r.tobytes() for r in data.x_train}
    assert len(inner.x_test) == round(0.2 * len(data.x_train))
    assert len(inner.x_train) + len(inner.x_test) == len(data.x_train)
    # No validation (or remaining) row comes from the test split.
    assert all(r.tobytes() in train_rows for r in np.concatenate([inner.x_train, inner.x_test]))
    with pytest.raises(ValueError, match="val_fraction"):
        experiment.validation_split(data, 1.0, 0)


def test_selection_prefers_a_learning_rate_that_trains():
    config = _tiny(spline_diabetes.get_config())
    config.methods = ("glorot",)
    config.train.epochs = 5
    # A vanishing learning rate cannot improve on the initialization; 1e-2 does.
    config.train.lr_grid = (1e-12, 1e-2)
    data = experiment.load_data(config.dataset)
    sel = experiment.select_learning_rates(config, data, (8, 1), jax.random.key(0))
    val = sel["glorot"]["val_best"]
    assert sel["glorot"]["learning_rate"] == 1e-2 and val[1] < val[0]
    config.train.lr_grid = (0.0, 1e-2)
    with pytest.raises(ValueError, match="lr_grid"):
        experiment.select_learning_rates(config, data, (8, 1), jax.random.key(0))


def test_zero_learning_rate_keeps_the_initialization():
    config = spline_diabetes.get_config()
    prep = experiment.prepare(experiment.load_data(config.dataset))
    trainer = experiment.make_trainer((8, 1), False, 32)
    params = experiment.random_init("glorot", [8, 1], prep.z_train.shape[1], jax.random.key(0))
    still, _ = experiment.train_curve(params, prep, trainer, 2, jax.random.key(1), 0.0)
    moved, _ = experiment.train_curve(params, prep, trainer, 2, jax.random.key(1), 1e-2)
    np.testing.assert_allclose(still, still[0], rtol=1e-6)
    assert moved[-1] < moved[0]


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
    config.train.select_lr = False  # the selection is tested on diabetes; this tests the loader
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


def test_global_input_scale_shares_one_std():
    config = spline_digits.get_config()
    data = experiment.load_data(config.dataset)
    col = experiment.prepare(data, "column")
    glob = experiment.prepare(data, "global")
    assert np.ptp(glob.x_std) == 0 and np.ptp(col.x_std) > 0
    # A pixel almost always 0 in training no longer gives test inputs of tens of stds.
    assert np.abs(col.z_test).max() > 20 > 5 > np.abs(glob.z_test).max()
    np.testing.assert_allclose(glob.z_train.mean(0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="input_scale"):
        experiment.prepare(data, "minmax")
