r"""Data-free distillation on digits (8x8x1): digits_cnn_teacher -> digits_cnn_small.

  python -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir=runs/teacher_digits
  python -m fastdfkd_jax.main --config=configs/dfkd_digits.py:fast5 \
      --workdir=runs/dfkd_digits_fast5 --config.teacher.checkpoint=runs/teacher_digits/teacher

The argument is the method (fast2 | fast5 | fast10 | fast5_exact | fast5_nometa | deepinv2k); the
files `configs/dfkd_digits_<method>.py` fix it. The paper's schedule shape (warmup, then one
synthesis call and `kd.steps` student steps per epoch) scaled to an 8x8 problem on 2 CPU cores;
results in docs/results.md.
"""

import ml_collections

from configs import dfkd_common


def digits_base() -> ml_collections.ConfigDict:
    """Digits settings shared by every method (before the method's own changes)."""
    config = dfkd_common.dfkd_config("digits", "digits_cnn_teacher", "digits_cnn_small")
    config.epochs = 40
    config.warmup = 5
    config.synthesis.batch_size = 128
    config.synthesis.generator.ngf = 32
    config.synthesis.generator.nz = 64
    # 8x8 images: shifts of one pixel, no flips (digits are not mirror-symmetric).
    config.synthesis.augment.padding = 1
    config.synthesis.augment.flip = False
    config.synthesis.augment.jitter = 1
    config.synthesis.reset_l0_epoch = -1
    config.pool.capacity = 128 * 40
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


def get_config(method: str = "fast5") -> ml_collections.ConfigDict:
    config = dfkd_common.apply_method(digits_base(), method)
    if method == "deepinv2k":
        # Keep the digits augmentation after deepinv() switches to jitter.
        config.synthesis.augment.flip = False
    return config
