r"""Teacher on scikit-learn digits (8x8x1, 10 classes): the embedded default.

  python -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir=runs/teacher_digits

Reaches >= 97% test accuracy in well under 2 minutes on 2 CPU cores (docs/results.md).
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.base_config("teacher")
    config.dataset = common.dataset("digits")
    config.model = ml_collections.ConfigDict(dict(arch="digits_cnn_teacher"))
    config.train = ml_collections.ConfigDict()
    config.train.epochs = 40
    config.train.batch_size = 64
    config.train.optimizer = common.optimizer(
        name="adam", learning_rate=3e-3, schedule="cosine", weight_decay=0.0
    )
    # Digits are not mirror-symmetric: shifts only.
    config.train.augment = ml_collections.ConfigDict(dict(padding=1, flip=False))
    config.checkpoint.every_epochs = 10
    return config
