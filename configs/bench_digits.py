r"""Acceleration benchmark on digits (8x8x1): DeepInv-2k against Fast-2/5/10, one command.

  python scripts/bench_acceleration.py --config=configs/bench_digits.py --workdir=runs/bench_digits
  python scripts/bench_acceleration.py --config=configs/bench_digits.py --quick \
      --workdir=runs/bench_digits_quick

Presets (the argument): '' (full: the 40-epoch digits schedule of configs/dfkd_digits.py for every
method; DeepInv-2k's accuracy from 3 batches of 2000 steps with the same total KD steps, its total
time extrapolated; 39 minutes on 2 shared CPU cores) and 'quick' (4 epochs, DeepInversion shortened
to 2 batches of 100 steps, teacher trained 10 epochs, no cost table; about 5 minutes). With
`teacher.checkpoint` empty, the teacher of configs/teacher_digits.py is trained first into
WORKDIR/teacher_run/teacher. Results: docs/benchmarks.md.
"""

import ml_collections

from configs import bench_common


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    config = bench_common.bench_config("configs.dfkd_digits")
    config.teacher.train_config = "configs.teacher_digits"
    run = config.run
    run.teacher = ml_collections.ConfigDict(dict(arch="digits_cnn_teacher"))
    run.student = ml_collections.ConfigDict(dict(arch="digits_cnn_small"))
    run.epochs = 40
    run.warmup = 5
    run.kd = ml_collections.ConfigDict(dict(steps=50))
    config.deepinv_epochs = 3  # 6000 DeepInversion steps: about 15 minutes here
    if preset == "quick":
        run.epochs, run.warmup, run.kd.steps = 4, 1, 10
        config.timing_repeats = 3
        config.deepinv_epochs, config.deepinv_steps = 2, 100
        config.cost_g_steps = ()  # --config.cost_g_steps='(2,)' adds it (about 45 s)
        config.teacher.train_epochs = 10  # about 99% test accuracy
    elif preset:
        raise ValueError(f"Unknown preset {preset!r}; choose '' (full) or 'quick'.")
    return config
