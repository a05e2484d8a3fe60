"""Learning-rate choice by the criterion the study reports: epochs to reach a validation target.

For one optimizer: the reference is the best random-init validation loss (the lowest point of any
random init's seed-mean validation curve at any grid learning rate); each init then gets the grid
value whose seed-mean validation curve first reaches ``factor x reference`` in the fewest epochs
(ties: the lower best validation loss). A choice at either end of the grid is flagged: the optimum
may lie outside it. The test split takes no part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def check_grid(name: str, grid: Sequence[float]) -> tuple[float, ...]:
    """Return ``grid`` as floats; ValueError naming it when empty, non-positive or not finite."""
    values = tuple(float(v) for v in grid)
    if not values or any(not np.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"{name} must hold positive learning rates, got {tuple(grid)}")
    return values


def first_reach(curve: np.ndarray, target: float) -> int | None:
    """First index where ``curve`` [E + 1] is at most ``target``, None if never."""
    hit = np.flatnonzero(curve <= target)
    return int(hit[0]) if hit.size else None


def seed_mean(curves: np.ndarray) -> np.ndarray:
    """Mean over the seed axis (-2) of ``[..., S, E + 1]`` curves (inf if any seed diverged)."""
    return curves.mean(-2)


def reference_loss(val: Mapping[str, np.ndarray], random_inits: Sequence[str]) -> float:
    """Best random-init validation loss: min over random inits, grid values and epochs of the
    seed-mean curve (``val[init]``: [L, S, E + 1]).
    """
    if not random_inits:
        raise ValueError("the reference needs at least one random init, got none")
    return float(min(seed_mean(val[m]).min() for m in random_inits))


def choose(val: np.ndarray, grid: Sequence[float], target: float) -> dict:
    """Pick the grid value that reaches ``target`` first on the seed-mean validation curve.

    Args:
      val: [L, S, E + 1] validation losses, one row per grid value.
      grid: [L] learning rates.
      target: the validation loss to reach.

    Returns:
      ``{"index", "learning_rate", "epochs" (None if no value reached the target), "reached",
      "edge" (chosen at either end of a grid of more than one value), "epochs_by_lr",
      "best_by_lr"}``. When no value reaches the target, the lowest best validation loss wins.

    """
    means = seed_mean(val)
    epochs = [first_reach(m, target) for m in means]
    best = [float(m.min()) for m in means]
    reached = [i for i, e in enumerate(epochs) if e is not None]
    if reached:
        index = min(reached, key=lambda i: (epochs[i], best[i]))
    else:
        index = int(np.argmin(best))
    return {
        "index": index,
        "learning_rate": float(grid[index]),
        "epochs": epochs[index],
        "reached": bool(reached),
        "edge": len(grid) > 1 and index in (0, len(grid) - 1),
        "epochs_by_lr": epochs,
        "best_by_lr": best,
    }
