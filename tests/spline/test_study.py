"""The study end to end: the :quick variants, resuming a killed study, and bad configs."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from spline import study, study_config, trainer
from tests.spline.conftest import load_config

DATASETS = ("spline_friedman1", "spline_diabetes", "spline_digits", "spline_wine_quality")


def _tiny(name="spline_diabetes"):
    config = load_config(name, "quick")
    config.inits = ("mars_pruned", "glorot")
    config.num_seeds = 1
    config.train.epochs = 3
    config.report.budgets = (1, 3)
    config.timing.repeats = 1
    config.timing.epochs = 1
    return config


@pytest.mark.parametrize("name", DATASETS)
def test_configs_load_with_and_without_quick(name):
    full, quick = load_config(name), load_config(name, "quick")
    study_config.validate(full)
    study_config.validate(quick)
    assert quick.train.epochs < full.train.epochs and quick.num_seeds < full.num_seeds
    assert full.num_seeds == 5 and set(full.optimizers) == {"adam", "sgd"}
    for grid in full.train.lr_grid.values():
        assert min(grid) <= 1e-5 and max(grid) >= 1e-1
    with pytest.raises(ValueError, match="'fast'"):
        load_config(name, "quick,fast")


def test_friedman1_large_variant():
    assert load_config("spline_friedman1", "large").dataset.n_samples >= 1e5 / 0.64


@pytest.mark.slow  # the study end to end (about 25 s); the default suite is at its bound
def test_friedman1_quick_end_to_end(tmp_path, fast_compile):
    config = load_config("spline_friedman1", "quick")
    config.report.figure = str(tmp_path / "figures" / "f.png")
    result = study.run(config, str(tmp_path / "run"))
    for name in ("results.json", "results.md", "loss_curves.png", "timing.json"):
        assert os.path.getsize(tmp_path / "run" / name) > 0
    assert os.path.getsize(tmp_path / "figures" / "f.png") > 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved["optimizers"]) == {"adam", "sgd"}
    for opt, res in result["optimizers"].items():
        rows = res["inits"]
        assert set(rows) == set(config.inits)
        # The converted network starts at the MARS fit: far below a random start.
        for m in ("mars_grow", "mars_pruned", "mars_he_spare"):
            assert rows[m]["initial_test"] < 0.5 < rows["he"]["initial_test"]
        for sel in res["selection"].values():
            assert sel["learning_rate"] in config.train.lr_grid[opt]
        # Seconds = init seconds + epochs x the pooled seconds per epoch.
        for row in rows.values():
            r = row["thresholds"]["2.0"]
            if r["epochs"] is not None:
                expected = row["init_seconds"] + r["epochs"] * result["timing"]["epoch"][opt]
                assert r["seconds"] == pytest.approx(expected)
    assert result["timing"]["init"]["mars_grow"] >= result["timing"]["fit"]["grow"] > 0


def test_killed_study_resumes_where_it_stopped(tmp_path, monkeypatch, fast_compile):
    config = _tiny()
    reference = study.run(config, str(tmp_path / "whole"))

    real = trainer.train_curves
    calls = []

    def dies_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, between two units
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_curves", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        study.run(config, str(tmp_path / "killed"))
    assert len(os.listdir(tmp_path / "killed" / "units")) == 2
    assert not (tmp_path / "killed" / "results.json").exists()

    calls.clear()
    monkeypatch.setattr(trainer, "train_curves", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = study.run(config, str(tmp_path / "killed"))
    assert len(calls) == 2  # 2 optimizers x 2 inits, two of them already done
    for opt in config.optimizers:
        got, want = resumed["optimizers"][opt], reference["optimizers"][opt]
        assert got["selection"] == want["selection"]
        for m in config.inits:
            np.testing.assert_array_equal(
                got["inits"][m]["test_curve_mean"], want["inits"][m]["test_curve_mean"]
            )


def test_workdir_of_another_config_is_refused(tmp_path, fast_compile):
    config = _tiny()
    config.optimizers = ("adam",)
    study.run(config, str(tmp_path))
    config.train.epochs = 4
    with pytest.raises(ValueError, match="another config"):
        study.run(config, str(tmp_path))


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("train.lr_grid.adam", (), r"lr_grid\.adam must hold positive"),
        ("train.lr_grid.sgd", (0.1, -1e-3), r"lr_grid\.sgd must hold positive"),
        ("dataset.name", "abalone", "'abalone'"),
        ("inits", ("mars_pruned", "xavier"), "'xavier'"),
        ("inits", ("mars_pruned",), "no random init"),
        ("optimizers", ("adam", "lion"), "'lion'"),
        ("report.factors", (2.0, 0.0), "factors"),
        ("train.epochs", 0, "train.epochs"),
        ("mars.degree", 2, "degree=2"),
    ],
)
def test_bad_configs_fail_before_compute(key, value, match):
    config = _tiny()
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ValueError, match=match):
        study.run(config, "/nonexistent/never/written")


def test_wine_quality_quick_through_tfds_mock(tmp_path, fast_compile):
    config = _tiny("spline_wine_quality")
    config.optimizers = ("adam",)
    with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
        result = study.run(config, str(tmp_path))
    assert np.isfinite(result["optimizers"]["adam"]["inits"]["mars_pruned"]["initial_test"])
