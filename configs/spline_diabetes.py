r"""scikit-learn's diabetes (442 rows, 10 inputs): MARS against random inits, MLP 10-64-1.

  python scripts/spline_experiment.py --config=configs/spline_diabetes.py \
      --workdir=runs/spline_diabetes

Variant ``quick``: a smoke run. Measured (docs/spline.md): no MARS start reaches 1.05x the best
random-init validation MSE (71 validation rows), though MARS starts have the lowest test MSE at
every budget.
"""

import ml_collections

from spline.study_config import apply_quick, base_config, parse_variants


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = parse_variants(arg)
    config = base_config()
    config.dataset.name = "diabetes"
    config.model.widths = (64,)
    config.train.batch_size = 32
    if "quick" in variants:
        apply_quick(config)
    return config
