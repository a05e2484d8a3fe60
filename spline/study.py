"""The spline-initialization study: MARS starts against random ones, judged by training speed.

``run(config, workdir)`` does, for one data set (``scripts/spline_experiment.py`` is its entry
point, ``configs/spline_<dataset>.py`` its configs built on ``base_config``):

1. splits the data into train / validation / test and standardizes with training statistics;
2. builds every init's starting parameters for every seed (MARS fitted once on the training rows);
3. for every optimizer and init, trains all (grid learning rate, seed) pairs for ``train.epochs``
   epochs, recording validation and test losses each epoch (saved per optimizer and init under
   ``workdir/units/``: a killed study resumes from the units it finished);
4. per optimizer, takes the best random-init validation loss as the reference and chooses each
   init's learning rate by epochs to ``train.select_factor x`` the reference (``spline.lr_select``);
5. times single-network epochs and the MARS fit, interleaved across inits in this process;
6. writes ``results.json``, ``results.md`` (thresholds table) and ``loss_curves.png``.

The test split is only reported on. The config and its checks live in ``spline.study_config``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from spline import data as data_lib
from spline import lr_select, report, starts, trainer
from spline.convert import min_widths, unit_count
from spline.mars import MARS
from spline.preprocess import Prepared, prepare
from spline.study_config import validate


class _Starts:
    """Every init's starting parameters per seed, and the MARS fits behind them."""

    def __init__(self, config: ml_collections.ConfigDict, data: data_lib.Data, prep: Prepared):
        self.config, self.data, self.prep = config, data, prep
        self.widths = tuple(config.model.widths)
        self.features = (*self.widths, prep.outputs)
        self.target = starts.mars_target(data, prep)
        self.fits: dict[str, MARS] = {}

    def fill(self, init: str) -> tuple[str, float]:
        return starts.spare_width(init, self.config.mars)

    def fit(self, kind: str) -> MARS:
        """The ``"configured"`` fit or the ``"grow"`` fill's thresh-0 fit, cached."""
        if kind not in self.fits:
            self.fits[kind] = self.fit_now(kind)
        return self.fits[kind]

    def fit_now(self, kind: str) -> MARS:
        if kind == "grow":
            return starts.fit_spare_source(
                self.config.mars, self.data.x_train, self.target, self.widths
            )
        return starts.fit_mars(self.config.mars, self.data.x_train, self.target)

    def fit_kinds(self, init: str) -> list[str]:
        """The fits a start needs (and whose time it pays)."""
        return ["configured", "grow"] if self.fill(init)[0] == "grow" else ["configured"]

    def params(self, init: str, key: jax.Array) -> dict:
        if init in starts.RANDOM_INITS:
            return starts.random_params(init, self.features, self.prep.z_train.shape[1], key)
        fill, scale = self.fill(init)
        return starts.mars_params(
            self.fit("configured"),
            self.data,
            self.prep,
            widths=self.widths,
            key=key,
            fill=fill,
            random_scale=scale,
            balance=self.config.mars.balance,
            logistic_c=self.config.mars.logistic_c,
            spare_source=self.fit("grow") if fill == "grow" else None,
        )


def _seed_keys(config: ml_collections.ConfigDict) -> tuple[list[jax.Array], jax.Array]:
    """Per seed: the init key, and the batch-order keys [S] (shared by every init)."""
    root = jax.random.key(config.seed)
    pairs = [jax.random.split(jax.random.fold_in(root, s)) for s in range(config.num_seeds)]
    return [p[0] for p in pairs], jnp.stack([p[1] for p in pairs])


def _stack(trees: Sequence[dict]) -> dict:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse to resume a workdir that holds a study of another config (``report`` aside: it
    changes the tables, not what was trained).
    """
    path = os.path.join(workdir, "config.json")
    current = config.to_json_best_effort(sort_keys=True)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        saved.pop("report", None)
        if saved != {k: v for k, v in json.loads(current).items() if k != "report"}:
            raise ValueError(
                f"workdir {workdir!r} holds a study of another config ({path}); use a new workdir"
            )
    else:
        with open(path, "w") as f:
            f.write(current)


def _unit_path(workdir: str, opt: str, init: str) -> str:
    return os.path.join(workdir, "units", f"{opt}__{init}.npz")


def train_units(
    config: ml_collections.ConfigDict, workdir: str, source: _Starts, prep: Prepared
) -> dict:
    """Validation and test curves of every (optimizer, init), computed or loaded from workdir.

    Returns:
      optimizer -> init -> ``(val, test)``, each [L, S, E + 1].

    """
    init_keys, order_keys = _seed_keys(config)
    batch = min(config.train.batch_size, prep.z_train.shape[0])
    out: dict[str, dict] = {}
    for opt in config.optimizers:
        tr = trainer.make_trainer(source.features, prep.classification, batch, opt)
        grid = lr_select.check_grid(f"train.lr_grid.{opt}", config.train.lr_grid[opt])
        out[opt] = {}
        for init in config.inits:
            path = _unit_path(workdir, opt, init)
            if os.path.exists(path):
                with np.load(path) as saved:
                    out[opt][init] = (saved["val"], saved["test"])
                logging.info("%s / %s: loaded from %s", opt, init, path)
                continue
            start = time.perf_counter()
            params = _stack([source.params(init, k) for k in init_keys])
            val, test = trainer.train_curves(
                tr, params, grid, prep, config.train.epochs, order_keys
            )
            # Written under a temporary name and renamed: a kill never leaves half a unit.
            tmp = path + ".tmp.npz"
            np.savez(tmp, val=val, test=test)
            os.replace(tmp, path)
            out[opt][init] = (val, test)
            logging.info(
                "%s / %s: %d lrs x %d seeds x %d epochs in %.1f s",
                opt,
                init,
                len(grid),
                config.num_seeds,
                config.train.epochs,
                time.perf_counter() - start,
            )
    return out


def select(config: ml_collections.ConfigDict, curves: dict) -> dict:
    """Per optimizer: the reference loss and each init's chosen learning rate."""
    random_inits = [m for m in config.inits if m in starts.RANDOM_INITS]
    out = {}
    for opt, by_init in curves.items():
        grid = lr_select.check_grid(f"train.lr_grid.{opt}", config.train.lr_grid[opt])
        val = {m: v for m, (v, _) in by_init.items()}
        reference = lr_select.reference_loss(val, random_inits)
        target = config.train.select_factor * reference
        out[opt] = {
            "grid": list(grid),
            "reference": reference,
            "select_factor": config.train.select_factor,
            "selection": {m: lr_select.choose(v, grid, target) for m, v in val.items()},
        }
    return out


def measure_times(
    config: ml_collections.ConfigDict, workdir: str, source: _Starts, prep: Prepared, chosen: dict
) -> dict:
    """Median single-network seconds per epoch and per start, interleaved across inits.

    Args:
      chosen: optimizer -> init -> learning rate.

    Returns:
      ``{"epoch": {opt: s}, "epoch_by_init": {opt: {init: s}}, "init": {init: s}, "fit":
      {fit: s}, "build": {init: s}, "raw": ...}`` (also saved to ``workdir/timing.json`` and
      reused on resume). ``epoch`` pools every init's epochs: they run the same computation on
      the same shapes, so their medians differ by load noise only (``epoch_by_init`` shows it).

    """
    path = os.path.join(workdir, "timing.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    init_keys, order_keys = _seed_keys(config)
    batch = min(config.train.batch_size, prep.z_train.shape[0])
    trainers = {
        opt: trainer.make_trainer(source.features, prep.classification, batch, opt)
        for opt in config.optimizers
    }
    starting = {m: source.params(m, init_keys[0]) for m in config.inits}  # also compiles
    mars_inits = [m for m in config.inits if m in starts.MARS_STARTS]
    fit_kinds = sorted({k for m in mars_inits for k in source.fit_kinds(m)})
    raw_epoch = {opt: {m: [] for m in config.inits} for opt in config.optimizers}
    raw_build = {m: [] for m in config.inits}
    raw_fit = {k: [] for k in fit_kinds}
    for rep in range(config.timing.repeats):
        for kind in fit_kinds:
            start = time.perf_counter()
            source.fit_now(kind)
            raw_fit[kind].append(time.perf_counter() - start)
        for m in config.inits:
            start = time.perf_counter()
            jax.block_until_ready(source.params(m, init_keys[rep % len(init_keys)]))
            raw_build[m].append(time.perf_counter() - start)
            for opt, tr in trainers.items():
                raw_epoch[opt][m] += trainer.epoch_seconds(
                    tr, starting[m], chosen[opt][m], prep, config.timing.epochs, order_keys[0]
                )
    fit = {k: float(np.median(v)) for k, v in raw_fit.items()}
    init_seconds = {}
    for m in config.inits:
        build = float(np.median(raw_build[m]))
        if m in starts.MARS_STARTS:
            init_seconds[m] = sum(fit[k] for k in source.fit_kinds(m)) + build
        else:
            init_seconds[m] = build
    out = {
        "epoch": {opt: float(np.median(sum(by.values(), []))) for opt, by in raw_epoch.items()},
        "epoch_by_init": {
            opt: {m: float(np.median(v)) for m, v in by.items()} for opt, by in raw_epoch.items()
        },
        "init": init_seconds,
        "fit": fit,
        "build": {m: float(np.median(v)) for m, v in raw_build.items()},
        "raw": {"epoch": raw_epoch, "build": raw_build, "fit": raw_fit},
    }
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out


def _mars_summary(source: _Starts, config: ml_collections.ConfigDict) -> dict:
    model = source.fit("configured")
    surrogate = "min" if model.max_degree_ > 1 else None
    out = {
        "terms": len(model.terms_),
        "forward_terms": len(model.forward_terms_),
        "converted_units": min_widths(model, surrogate),
        "widths": list(source.widths),
        "rsq": float(model.rsq_),
        "starts": {},
    }
    for m in config.inits:
        if m in starts.MARS_STARTS:
            fill, scale = source.fill(m)
            grown = source.fit("grow") if fill == "grow" else None
            spare = starts.spare_terms(model, source.widths, fill, grown)
            out["starts"][m] = {
                "spare": fill,
                "random_scale": scale,
                "spare_units": sum(unit_count(t) for t in spare),
            }
    if "grow" in source.fits:
        out["grow_forward_terms"] = len(source.fits["grow"].forward_terms_)
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run (or resume) the study of one data set and write its results to ``workdir``.

    Returns:
      The results dict (also ``results.json``); the tables are in ``results.md``, the curves in
      ``loss_curves.png``.

    """
    validate(config)
    os.makedirs(os.path.join(workdir, "units"), exist_ok=True)
    _check_workdir(config, workdir)
    data = data_lib.load_data(config.dataset)
    prep = prepare(data, config.dataset.input_scale)
    source = _Starts(config, data, prep)
    loss_name = "cross-entropy" if prep.classification else "MSE"
    curves = train_units(config, workdir, source, prep)
    chosen_all = select(config, curves)
    chosen = {
        opt: {m: s["learning_rate"] for m, s in res["selection"].items()}
        for opt, res in chosen_all.items()
    }
    times = measure_times(config, workdir, source, prep, chosen)
    random_inits = [m for m in config.inits if m in starts.RANDOM_INITS]
    result = {
        "dataset": config.dataset.name,
        "loss": loss_name,
        "rows": {"train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test)},
        "inputs": int(data.x_train.shape[1]),
        "mars": _mars_summary(source, config),
        "timing": {k: v for k, v in times.items() if k != "raw"},
        "optimizers": {},
    }
    test_curves: dict[str, dict] = {}
    for opt, res in chosen_all.items():
        rows, test_curves[opt] = {}, {}
        for m, sel in res["selection"].items():
            val, test = (c[sel["index"]] for c in curves[opt][m])
            test_curves[opt][m] = test
            rows[m] = report.init_row(
                val,
                test,
                reference=res["reference"],
                factors=config.report.factors,
                budgets=config.report.budgets,
                init_seconds=times["init"][m],
                epoch_seconds=times["epoch"][opt],
            )
            rows[m]["val_curve_mean"] = report.finite_list(lr_select.seed_mean(val))
            rows[m]["test_curve_mean"] = report.finite_list(lr_select.seed_mean(test))
        result["optimizers"][opt] = {
            **res,
            "inits": rows,
            "speedups": report.speedups(rows, config.train.select_factor, random_inits),
        }
    png = report.plot(test_curves, result, loss_name, os.path.join(workdir, "loss_curves.png"))
    if config.report.figure:
        os.makedirs(os.path.dirname(os.path.abspath(config.report.figure)), exist_ok=True)
        shutil.copyfile(png, config.report.figure)
    md = report.markdown(result, loss_name)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    logging.info("results:\n%s", md)
    return result
