r"""Friedman #1 (10 inputs, noise 1): degree-1 MARS against random inits, MLP 10-64-64-1.

  python scripts/spline_experiment.py --config=configs/spline_friedman1.py \
      --workdir=runs/spline_friedman1
  python scripts/spline_experiment.py --config=configs/spline_friedman1.py:large \
      --workdir=runs/spline_friedman1_large

Variants: ``large`` (10^5 training rows instead of the paper-like 3,200; 30 epochs, each of 781
steps, instead of 100 of 25; 3 timing rounds), ``quick`` (a smoke run in a minute or two);
combine as ``:large,quick``. Measured on the shared 2-core machine (docs/spline.md): with Adam the
MARS start (``mars_pruned``) reaches 1.05x the best random-init validation MSE in 3 epochs against
Glorot's 9 (large: 2 against 7) but loses on wall-clock, fit included (0.04 s against 0.02 s; large:
1.28 s against 0.75 s).
"""

import ml_collections

from spline.study_config import apply_quick, base_config, parse_variants

PAPER_LIKE_ROWS = 5_000  # 3,200 train / 800 validation / 1,000 test, the size of the paper's sets
LARGE_ROWS = 156_250  # 100,000 training rows, where a MARS fit can pay for itself
LARGE_EPOCHS = 30
LARGE_TIMING_REPEATS = 3  # each round refits MARS twice (8 s and 33 s under load)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = parse_variants(arg, ("large", "quick"))
    config = base_config()
    config.dataset.name = "friedman1"
    config.dataset.n_samples = LARGE_ROWS if "large" in variants else PAPER_LIKE_ROWS
    config.dataset.n_features = 10
    config.dataset.noise = 1.0
    # Two hidden layers: the second starts as the identity on the converted units.
    config.model.widths = (64, 64)
    config.train.batch_size = 128
    if "large" in variants:
        # 30 epochs are 23,000 steps at this size (random inits reach their best well within);
        # the grid, seeds and inits stay those of every other data set.
        config.train.epochs = LARGE_EPOCHS
        config.timing.repeats = LARGE_TIMING_REPEATS
    if "quick" in variants:
        apply_quick(config)
        config.dataset.n_samples = 2_000
    return config
