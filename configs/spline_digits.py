r"""Digits (8x8, 10 classes): MARS on one-hot targets, output layer refit by logistic regression,
MLP 61-128-10 (the 61 pixels not constant on the training rows).

  python scripts/spline_experiment.py --config=configs/spline_digits.py \
      --workdir=runs/spline_digits

Variant ``quick``: a smoke run. Measured (docs/spline.md): MARS starts begin at test cross-entropy
0.09-0.11 after one epoch (random 1.4-1.6) but plateau above the best random-init validation loss;
the logistic refit alone takes about 10 s.
"""

import ml_collections

from spline.study_config import apply_quick, base_config, parse_variants


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = parse_variants(arg)
    config = base_config()
    config.dataset.name = "digits"
    # Pixels share one scale; per-pixel standardization turns a pixel that is almost always 0 in
    # training into test inputs of up to 89 standard deviations (same for every init).
    config.dataset.input_scale = "global"
    config.mars.max_terms = 61
    config.model.widths = (128,)
    config.train.batch_size = 64
    if "quick" in variants:
        apply_quick(config)
        config.mars.max_terms = 21
    return config
