r"""scikit-learn's diabetes (442 rows, 10 inputs): MARS against random inits, MLP 10-64-1.

  python scripts/spline_experiment.py --config=configs/spline_diabetes.py \
      --workdir=runs/spline_diabetes

Variant ``quick``: a smoke run. Results: docs/spline.md.
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
