r"""Friedman #1 (n = 5000, 10 inputs, noise 1): degree-1 MARS into a 2-hidden-layer MLP.

  python scripts/spline_experiment.py --config=configs/spline_friedman1.py \
      --workdir=runs/spline_friedman1

The second hidden layer starts as the identity (deepening), both are widened to 64 units. Result
on this machine (5 seeds, docs/spline.md): MARS init reaches the best Glorot test MSE (0.0564,
standardized units) at epoch 9 against 70, in 0.11 s (MARS fit 0.07 s included) against 0.30 s.
Degree 2 (``--config.mars.degree=2``, min-surrogate) starts lower (0.058) but its fit costs 0.34 s.
"""

from configs import spline_diabetes


def get_config():
    config = spline_diabetes.get_config()
    config.dataset.name = "friedman1"
    config.dataset.n_samples = 5000
    config.dataset.n_features = 10
    config.dataset.noise = 1.0
    config.model.widths = (64, 64)
    config.train.epochs = 200
    config.train.batch_size = 128
    return config
