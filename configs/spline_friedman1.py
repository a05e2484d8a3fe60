r"""Friedman #1 (n = 5000, 10 inputs, noise 1) with the diabetes settings otherwise.

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
    config.train.epochs = 100
    config.train.batch_size = 128
    return config
