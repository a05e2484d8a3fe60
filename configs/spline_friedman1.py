r"""Friedman #1 (n = 5000, 10 inputs, noise 1), degree-2 MARS through the min-surrogate.

  python scripts/spline_experiment.py --config=configs/spline_friedman1.py \
      --workdir=runs/spline_friedman1

Result on this machine: see docs/spline.md.
"""

from configs import spline_diabetes


def get_config():
    config = spline_diabetes.get_config()
    config.dataset.name = "friedman1"
    config.dataset.n_samples = 5000
    config.dataset.n_features = 10
    config.dataset.noise = 1.0
    # The target has an x1 * x2 interaction that an additive (degree-1) fit cannot start from: use
    # degree 2 and its min-surrogate, which needs two hidden layers.
    config.mars.degree = 2
    config.model.widths = (64, 64)
    config.train.epochs = 200
    config.train.batch_size = 128
    return config
