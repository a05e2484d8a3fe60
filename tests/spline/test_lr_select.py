"""Learning-rate choice by epochs to a validation target, on hand-made curves."""

import numpy as np
import pytest

from spline import lr_select


def _curves(*seed_mean_curves):
    # [L, S=2, E+1]: two seeds symmetric around the given mean.
    c = np.array(seed_mean_curves, dtype=float)
    return np.stack([c - 0.01, c + 0.01], 1)


def test_first_reach():
    assert lr_select.first_reach(np.array([3.0, 2.0, 1.0, 1.0]), 1.0) == 2
    assert lr_select.first_reach(np.array([3.0, 2.0]), 1.0) is None
    assert lr_select.first_reach(np.array([0.5, 2.0]), 1.0) == 0


def test_choose_fewest_epochs_then_lowest_loss():
    val = _curves(
        [2.0, 1.5, 1.0, 0.9],  # reaches 1.0 at epoch 2
        [2.0, 1.0, 0.95, 0.95],  # epoch 1, best 0.95
        [2.0, 1.0, 0.8, 0.7],  # epoch 1, best 0.7: wins the tie
        [2.0, np.inf, np.inf, np.inf],  # diverged
    )
    sel = lr_select.choose(val, (1e-4, 1e-3, 1e-2, 1e-1), 1.0)
    assert sel["learning_rate"] == 1e-2 and sel["epochs"] == 1
    assert sel["reached"] and not sel["edge"]
    assert sel["epochs_by_lr"] == [2, 1, 1, None]


def test_choose_flags_edges_and_unreached_targets():
    val = _curves([2.0, 1.5, 1.2], [2.0, 1.9, 1.8])
    sel = lr_select.choose(val, (1e-3, 1e-2), 1.0)
    # Nobody reaches 1.0: the lowest best validation loss wins, flagged as not reached.
    assert sel["learning_rate"] == 1e-3 and sel["epochs"] is None
    assert not sel["reached"] and sel["edge"]
    assert not lr_select.choose(_curves([2.0, 0.5]), (1e-3,), 1.0)["edge"]


def test_reference_is_the_best_random_seed_mean():
    val = {
        "he": _curves([2.0, 0.7, 0.8], [2.0, 0.9, 0.6]),
        "glorot": _curves([1.0, 0.65, 0.9]),
        "mars": _curves([0.1, 0.1, 0.1]),  # not random: ignored
    }
    assert lr_select.reference_loss(val, ["he", "glorot"]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="random init"):
        lr_select.reference_loss(val, [])


@pytest.mark.parametrize("grid", [(), (0.0, 1e-3), (-1e-3,), (float("nan"),)])
def test_bad_grids_are_named(grid):
    with pytest.raises(ValueError, match=r"lr_grid\.adam must hold positive"):
        lr_select.check_grid("lr_grid.adam", grid)
