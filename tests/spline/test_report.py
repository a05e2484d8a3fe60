"""Threshold rows, speed-ups and the Markdown table on known values."""

import numpy as np
import pytest

from spline import report


def _row(val, **kw):
    val = np.asarray(val, float)
    args = dict(reference=1.0, factors=(2.0, 1.0), budgets=(1, 2, 100))
    args.update(init_seconds=0.5, epoch_seconds=0.25)
    args.update(kw)
    return report.init_row(val, val + 1.0, **args)


def test_init_row_known_values():
    row = _row([[3.0, 1.9, 1.2, 1.0], [3.0, 2.1, 1.0, 0.9]])
    two = row["thresholds"]["2.0"]
    # Seed-mean curve [3, 2, 1.1, 0.95]: 2x reached at epoch 1, 1x at epoch 3.
    assert two["epochs"] == 1 and two["seconds"] == pytest.approx(0.5 + 0.25)
    assert two["seed_epochs"] == [1, 2] and two["seeds_reached"] == 2
    assert row["thresholds"]["1.0"]["epochs"] == 3
    assert row["thresholds"]["1.0"]["seed_epochs"] == [3, 2]
    # Budgets beyond the epochs run are left out; test loss is val + 1 here.
    assert set(row["test_at"]) == {"1", "2"}
    assert row["test_at"]["2"]["mean"] == pytest.approx(2.1)
    assert row["initial_test"] == pytest.approx(4.0)


def test_unreached_is_none_and_text_not_a_number():
    row = _row([[3.0, 2.5, 1.5]])
    assert row["thresholds"]["1.0"]["epochs"] is None
    assert row["thresholds"]["1.0"]["seconds"] is None
    result = {
        "dataset": "toy",
        "optimizers": {
            "adam": {
                "reference": 1.0,
                "select_factor": 1.0,
                "grid": [1e-3],
                "selection": {
                    "he": {
                        "learning_rate": 1e-3,
                        "edge": False,
                        "reached": False,
                        "index": 0,
                        "epochs_by_lr": [None],
                    }
                },
                "inits": {"he": row},
                "speedups": {},
            }
        },
    }
    md = report.markdown(result, "MSE")
    assert "not reached within 2 epochs" in md
    assert "1e-3" not in md and "0.001!" in md


def test_speedups():
    fast = _row([[3.0, 1.0, 0.9]], init_seconds=1.0)  # 1x at epoch 1: 1.25 s
    slow = _row([[3.0, 2.0, 1.5, 1.2, 1.0]], init_seconds=0.0)  # epoch 4: 1.0 s
    never = _row([[3.0, 3.0]], init_seconds=0.0)
    start = _row([[0.9, 0.9]], init_seconds=0.1)
    rows = {"mars": fast, "he": slow, "glorot": never, "m0": start}
    s = report.speedups(rows, 1.0, ["he", "glorot"])
    assert s["mars"]["epochs"] == pytest.approx(4.0)
    assert s["mars"]["seconds"] == pytest.approx(1.0 / 1.25)
    assert s["m0"]["at_start"] and s["m0"]["epochs"] is None
    assert s["m0"]["seconds"] == pytest.approx(10.0)
    assert report.speedups({"mars": fast, "glorot": never}, 1.0, ["glorot"])["mars"] == {
        "epochs": None,
        "seconds": None,
        "at_start": False,
    }


def test_diverged_seeds_are_counted_not_averaged():
    row = _row([[3.0, 1.0, np.inf], [3.0, 1.0, 0.5]])
    assert row["test_at"]["2"] == {"mean": None, "std": None, "diverged": 1}
    assert report.finite_list(np.array([1.0, np.inf, np.nan])) == [1.0, None, None]
