r"""Digits (8x8, 10 classes): MARS on one-hot targets, output layer refit by logistic regression.

  python scripts/spline_experiment.py --config=configs/spline_digits.py \
      --workdir=runs/spline_digits

Result on this machine: see docs/spline.md.
"""

from configs import spline_diabetes


def get_config():
    config = spline_diabetes.get_config()
    config.dataset.name = "digits"
    config.mars.max_terms = 61
    config.model.widths = (128,)
    config.train.epochs = 100
    config.train.batch_size = 64
    return config
