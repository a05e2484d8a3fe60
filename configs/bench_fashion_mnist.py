r"""Acceleration benchmark on Fashion-MNIST (28x28x1): DeepInv-2k against Fast-2/5/10.

  python -m fastdfkd_jax.main --config=configs/teacher_fashion_mnist.py \
      --workdir=runs/teacher_fashion_mnist
  python scripts/bench_acceleration.py --config=configs/bench_fashion_mnist.py \
      --workdir=runs/bench_fashion_mnist \
      --config.teacher.checkpoint=runs/teacher_fashion_mnist/teacher

Presets: '' (full: the 150-epoch schedule of configs/dfkd_fashion_mnist.py for every method;
DeepInv-2k's accuracy from 6 batches of 2000 steps, its total extrapolated) and 'quick' (6 epochs,
DeepInversion 2 batches of 100 steps, no cost table). Times on 2 CPU cores: docs/benchmarks.md.
"""

import ml_collections

from configs import bench_common


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    config = bench_common.bench_config("configs.dfkd_fashion_mnist")
    run = config.run
    run.teacher = ml_collections.ConfigDict(dict(arch="fmnist_cnn_teacher"))
    run.student = ml_collections.ConfigDict(dict(arch="fmnist_cnn_medium"))
    run.epochs = 150
    run.warmup = 10
    run.kd = ml_collections.ConfigDict(dict(steps=80))
    config.deepinv_epochs = 6
    config.cost_g_steps = (2, 5)
    if preset == "quick":
        run.epochs, run.warmup, run.kd.steps = 6, 1, 10
        config.timing_repeats = 3
        config.deepinv_epochs, config.deepinv_steps = 2, 100
        config.cost_g_steps = ()
    elif preset:
        raise ValueError(f"Unknown preset {preset!r}; choose '' (full) or 'quick'.")
    return config
