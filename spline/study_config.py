"""The study's config: shared defaults (``base_config``), variants and checks (``validate``).

Each ``configs/spline_<dataset>.py`` starts from ``base_config()``, sets its data set and model, and
applies its variants (``parse_variants``; ``:quick`` through ``apply_quick``).
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from spline import data as data_lib
from spline import lr_select, starts, trainer
from spline.preprocess import INPUT_SCALES

# Learning-rate grid, the same for Adam and SGD: decades from 1e-5 to 1, so that the optimum of
# every init lies inside it (a choice at either end is flagged in the tables).
LR_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
VARIANTS = ("quick",)


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every ``configs/spline_<dataset>.py`` (each sets its data set)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_seeds = 5
    config.inits = starts.INITS
    config.optimizers = ("adam", "sgd")
    config.dataset = ml_collections.ConfigDict(
        dict(
            name="",
            test_fraction=0.2,
            # Share of the non-test rows held out for validation (learning-rate choice and the
            # reported thresholds).
            val_fraction=0.2,
            split_seed=0,
            # "column": each input divided by its training std; "global": one std for all
            # inputs (spline.preprocess.prepare).
            input_scale="column",
            # Generated / downloaded data sets only (declared here so every config has the keys).
            n_samples=0,
            n_features=0,
            noise=0.0,
            tfds_name="",
            data_dir="",
        )
    )
    config.mars = ml_collections.ConfigDict(
        dict(
            max_terms=21,
            degree=1,
            thresh=1e-3,
            balance=True,
            logistic_c=1.0,
            # Random units' incoming std as a fraction of He-normal's in the mars_grow and
            # mars_pruned starts: a tenth keeps their activations an order of magnitude below
            # the converted units' once they learn.
            spare_scale=0.1,
        )
    )
    config.model = ml_collections.ConfigDict(dict(widths=(64,)))
    config.train = ml_collections.ConfigDict(
        dict(
            epochs=100,
            batch_size=32,
            lr_grid=ml_collections.ConfigDict(dict(adam=LR_GRID, sgd=LR_GRID)),
            # The reported criterion the learning rate is chosen by: epochs to this multiple of
            # the best random-init validation loss.
            select_factor=1.05,
        )
    )
    config.report = ml_collections.ConfigDict(
        dict(
            factors=(2.0, 1.2, 1.05, 1.0),
            budgets=(1, 5, 20, 100),
            # Also write the PNG here (e.g. docs/figures/spline_<dataset>.png); "" for none.
            figure="",
        )
    )
    # Single-network timings: `repeats` rounds, each timing `epochs` epochs of every init and
    # optimizer (and one MARS fit), interleaved.
    config.timing = ml_collections.ConfigDict(dict(repeats=7, epochs=3))
    return config


def parse_variants(arg: str | None, allowed: Sequence[str] = VARIANTS) -> set[str]:
    """Comma-separated config variants (``configs/x.py:large,quick``).

    Raises:
      ValueError: naming the variants not in ``allowed``.

    """
    names = {a.strip() for a in (arg or "").split(",") if a.strip()}
    unknown = sorted(names - set(allowed))
    if unknown:
        raise ValueError(f"unknown config variant(s) {unknown}; choose from {tuple(allowed)}")
    return names


def apply_quick(config: ml_collections.ConfigDict) -> None:
    """The ``:quick`` variant's shared part: a smoke run of the whole pipeline in minutes."""
    config.num_seeds = 2
    config.train.epochs = 10
    config.train.lr_grid.adam = (1e-3, 1e-2)
    config.train.lr_grid.sgd = (1e-2, 1e-1)
    config.report.budgets = (1, 5)
    config.timing.repeats = 2
    config.timing.epochs = 2


def validate(config: ml_collections.ConfigDict) -> None:
    """Check the config before any compute; ValueError naming the key and value."""
    data_lib.check_name(config.dataset.name)
    if config.dataset.input_scale not in INPUT_SCALES:
        raise ValueError(
            f"dataset.input_scale {config.dataset.input_scale!r} not in {INPUT_SCALES}"
        )
    for m in config.inits:
        starts.check_init(m)
    if not any(m in starts.RANDOM_INITS for m in config.inits):
        raise ValueError(
            f"inits {tuple(config.inits)} has no random init: the reference loss needs one of "
            f"{sorted(starts.RANDOM_INITS)}"
        )
    if not config.optimizers:
        raise ValueError("optimizers is empty")
    for opt in config.optimizers:
        trainer.check_optimizer(opt)
        if opt not in config.train.lr_grid:
            raise ValueError(f"train.lr_grid has no grid for optimizer {opt!r}")
        lr_select.check_grid(f"train.lr_grid.{opt}", config.train.lr_grid[opt])
    for name in ("num_seeds", "train.epochs", "train.batch_size", "timing.repeats"):
        value = config
        for part in name.split("."):
            value = value[part]
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    factors = (*config.report.factors, config.train.select_factor)
    if any(not f > 0 for f in factors):
        raise ValueError(f"report.factors and train.select_factor must be > 0, got {factors}")
    if any(int(b) != b or b < 0 for b in config.report.budgets):
        raise ValueError(f"report.budgets must be epochs >= 0, got {config.report.budgets}")
    if not config.mars.spare_scale >= 0:
        raise ValueError(f"mars.spare_scale must be >= 0, got {config.mars.spare_scale}")
    if config.mars.degree > 1:
        filled = [m for m in config.inits if m in starts.MARS_STARTS and m != "mars_he_spare"]
        if filled:
            raise ValueError(
                f"inits {filled} fill the spare width of the exact degree-1 conversion; with "
                f"mars.degree={config.mars.degree} use inits without them (e.g. mars_he_spare)"
            )
