"""The study's tables and plot: thresholds reached, test loss at fixed budgets, loss curves.

Seconds to a threshold are ``init seconds + epochs x seconds per epoch``: the init seconds (MARS
fit, conversion, logistic refit; 0 for random inits) and the per-epoch seconds are medians of
single-network timings taken interleaved across inits in one process (``spline.study``), so a
change of machine load hits every init alike. A threshold that is not reached is reported as
"not reached within N epochs", never as a number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from spline.lr_select import first_reach, seed_mean


def _reach(curves: np.ndarray, target: float) -> dict:
    """Epochs to ``target`` on the seed-mean curve and per seed (``curves``: [S, E + 1])."""
    per_seed = [first_reach(c, target) for c in curves]
    hit = [e for e in per_seed if e is not None]
    return {
        "epochs": first_reach(seed_mean(curves), target),
        "seed_epochs": per_seed,
        "seeds_reached": len(hit),
        "seed_epochs_mean": float(np.mean(hit)) if hit else None,
        "seed_epochs_std": float(np.std(hit)) if hit else None,
    }


def _mean_std(values: np.ndarray) -> dict:
    """Mean and std over seeds; None for both (and the count) where a seed diverged."""
    diverged = int(np.sum(~np.isfinite(values)))
    if diverged:
        return {"mean": None, "std": None, "diverged": diverged}
    return {"mean": float(values.mean()), "std": float(values.std()), "diverged": 0}


def finite_list(curve: np.ndarray) -> list:
    """``curve`` as a JSON-safe list: None where not finite (a diverged run)."""
    return [float(v) if np.isfinite(v) else None for v in curve]


def init_row(
    val: np.ndarray,
    test: np.ndarray,
    *,
    reference: float,
    factors: Sequence[float],
    budgets: Sequence[int],
    init_seconds: float,
    epoch_seconds: float,
) -> dict:
    """One init's results at its chosen learning rate.

    Args:
      val, test: [S, E + 1] validation and test losses.
      reference: the best random-init validation loss.
      factors: thresholds as multiples of ``reference``.
      budgets: epochs at which the test loss is reported (those beyond E are left out).
      init_seconds: median seconds to build the start (MARS fit included).
      epoch_seconds: median seconds of one training epoch.

    Returns:
      ``{"thresholds": {factor: {"target", "epochs", "seconds", ...}}, "test_at": {budget:
      {"mean", "std"}}, "initial_test", "best_val", "init_seconds", "epoch_seconds",
      "epochs_run"}``; epochs and seconds are None where not reached.

    """
    epochs_run = val.shape[-1] - 1
    thresholds = {}
    for f in factors:
        r = _reach(val, f * reference)
        r["target"] = f * reference
        r["seconds"] = None if r["epochs"] is None else init_seconds + r["epochs"] * epoch_seconds
        thresholds[str(f)] = r
    test_at = {str(b): _mean_std(test[:, b]) for b in budgets if b <= epochs_run}
    return {
        "thresholds": thresholds,
        "test_at": test_at,
        "initial_test": float(test[:, 0].mean()),
        "best_val": finite_list(np.array([seed_mean(val).min()]))[0],
        "init_seconds": init_seconds,
        "epoch_seconds": epoch_seconds,
        "epochs_run": epochs_run,
    }


def speedups(rows: Mapping[str, dict], factor: float, random_inits: Sequence[str]) -> dict:
    """Per non-random init: epochs and seconds of the fastest random init to ``factor`` divided by
    its own (None where either side did not reach it).
    """
    key = str(factor)

    def fastest(field: str) -> float | None:
        values = [rows[m]["thresholds"][key][field] for m in random_inits if m in rows]
        values = [v for v in values if v is not None]
        return min(values) if values else None

    out = {}
    for m, row in rows.items():
        if m in random_inits:
            continue
        ratio = {}
        for field in ("epochs", "seconds"):
            own, ref = row["thresholds"][key][field], fastest(field)
            # An init that starts below the target reaches it at epoch 0: no finite epoch ratio
            # (its seconds are its init seconds).
            ratio[field] = None if own is None or ref is None or own == 0 else ref / own
        ratio["at_start"] = row["thresholds"][key]["epochs"] == 0
        out[m] = ratio
    return out


def _reached(r: dict, epochs_run: int) -> str:
    if r["epochs"] is None:
        return f"not reached within {epochs_run} epochs"
    return f"{r['epochs']} ep / {r['seconds']:.2f} s"


def _test_cell(at: dict, seeds: int) -> str:
    if at["diverged"]:
        return f"diverged ({at['diverged']}/{seeds} seeds)"
    return f"{at['mean']:.4f} ± {at['std']:.4f}"


def markdown(result: Mapping, loss_name: str) -> str:
    """Render one data set's results (``spline.study.run``'s dict) as Markdown."""
    lines = [f"# {result['dataset']}: validation {loss_name} thresholds and test {loss_name}", ""]
    for opt, res in result["optimizers"].items():
        factors = list(next(iter(res["inits"].values()))["thresholds"])
        budgets = list(next(iter(res["inits"].values()))["test_at"])
        lines += [
            f"## {opt}",
            "",
            f"Reference: best random-init validation {loss_name} = {res['reference']:.4f}; "
            f"learning rate chosen per init by epochs to {res['select_factor']}x the reference "
            "(* = at an edge of the grid, ! = no grid value reached it).",
            "",
            "| init | lr | init s | s/epoch | "
            + " | ".join(f"{f}x" for f in factors)
            + " | "
            + " | ".join(f"test @{b}" for b in budgets)
            + " |",
            "|---" * (4 + len(factors) + len(budgets)) + "|",
        ]
        for m, row in res["inits"].items():
            sel = res["selection"][m]
            flag = ("*" if sel["edge"] else "") + ("" if sel["reached"] else "!")
            cells = [
                m,
                f"{sel['learning_rate']:g}{flag}",
                f"{row['init_seconds']:.3f}",
                f"{row['epoch_seconds']:.4f}",
            ]
            cells += [_reached(row["thresholds"][f], row["epochs_run"]) for f in factors]
            cells += [
                _test_cell(row["test_at"][b], len(row["thresholds"][factors[0]]["seed_epochs"]))
                for b in budgets
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for m, s in res["speedups"].items():
            text = ", ".join(
                f"{field} {s[field]:.2f}x" if s[field] is not None else f"{field} -"
                for field in ("epochs", "seconds")
            )
            if s["at_start"]:
                text += " (reached at the start, epoch 0)"
            lines.append(
                f"- {m} vs the fastest random init at {res['select_factor']}x: {text} (> 1: faster)"
            )
        lines += ["", "Validation: epochs to the selection target by learning rate", ""]
        grid = res["grid"]
        lines.append("| init | " + " | ".join(f"{lr:g}" for lr in grid) + " |")
        lines.append("|---" * (len(grid) + 1) + "|")
        for m, sel in res["selection"].items():
            cells = ["-" if e is None else str(e) for e in sel["epochs_by_lr"]]
            cells[sel["index"]] = f"**{cells[sel['index']]}**"
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(curves: Mapping, result: Mapping, loss_name: str, path: str) -> str:
    """Write one PNG: test loss (seed mean, min-max band) against epochs and seconds, log scale.

    Args:
      curves: optimizer -> init -> [S, E + 1] test losses at the chosen learning rate.
      result: ``spline.study.run``'s dict (init and epoch seconds, chosen rates).
      loss_name: y-axis label.
      path: the PNG to write.

    Returns:
      ``path``.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = list(curves)
    fig, axes = plt.subplots(len(opts), 2, figsize=(11, 3.6 * len(opts)), squeeze=False)
    for row, opt in zip(axes, opts, strict=True):
        res = result["optimizers"][opt]
        for m, c in curves[opt].items():
            info = res["inits"][m]
            epochs = np.arange(c.shape[1])
            seconds = info["init_seconds"] + epochs * info["epoch_seconds"]
            label = f"{m} (lr {res['selection'][m]['learning_rate']:g})"
            for ax, xs in zip(row, (epochs, seconds), strict=True):
                (line,) = ax.plot(xs, seed_mean(c), label=label)
                ax.fill_between(xs, c.min(0), c.max(0), alpha=0.15, color=line.get_color())
        for ax, xlabel in zip(row, ("epoch", "seconds (MARS fit included)"), strict=True):
            ax.set_yscale("log")
            # Epoch 0 is the start: linear below 1; seconds are all positive (init time).
            if xlabel == "epoch":
                ax.set_xscale("symlog", linthresh=1)
                ax.set_xlim(left=0)
            else:
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test {loss_name}")
            ax.set_title(f"{result['dataset']}, {opt}")
            ax.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
