r"""FastDFKD Fast-5 on digits (8x8x1): digits_cnn_teacher -> digits_cnn_small.

  python -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir=runs/teacher_digits
  python -m fastdfkd_jax.main --config=configs/dfkd_digits_fast5.py \
      --workdir=runs/dfkd_digits_fast5 --config.teacher.checkpoint=runs/teacher_digits/teacher

The schedule is the paper's shape scaled to an 8x8 problem on 2 CPU cores (see docs/results.md for
what it reaches).
"""

import ml_collections

from configs import dfkd_common


def digits_base() -> ml_collections.ConfigDict:
    """Digits settings shared by every method."""
    config = dfkd_common.dfkd_config("digits", "digits_cnn_teacher", "digits_cnn_small")
    config.epochs = 60
    config.warmup = 5
    config.synthesis.batch_size = 128
    config.synthesis.generator.ngf = 32
    config.synthesis.generator.nz = 64
    config.synthesis.augment.padding = 1
    config.synthesis.augment.flip = False
    config.synthesis.augment.jitter = 1
    config.synthesis.reset_l0_epoch = -1
    config.pool.capacity = 128 * 60
    config.kd.steps = 50
    config.kd.batch_size = 128
    config.kd.optimizer.learning_rate = 0.05
    config.kd.optimizer.end_learning_rate = 5e-5
    config.kd.augment.padding = 1
    config.kd.augment.flip = False
    config.sample_every_epochs = 20
    config.sample_upscale = 4
    config.checkpoint.every_epochs = 10
    return config


def get_config() -> ml_collections.ConfigDict:
    return dfkd_common.fast(digits_base(), 5)
