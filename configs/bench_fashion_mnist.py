r"""Acceleration benchmark on Fashion-MNIST (28x28x1): the paper's methods side by side.

  python -m fastdfkd_jax.main --config=configs/teacher_fashion_mnist.py \
      --workdir=runs/teacher_fashion_mnist
  cp -r runs/teacher_fashion_mnist/teacher results/teachers/fashion_mnist   # kept in the repository
  python -m fastdfkd_jax.main --config=configs/bench_fashion_mnist.py \
      --workdir=runs/bench_fashion_mnist

Variants: '' (full: the 150-epoch schedule of configs/dfkd_fashion_mnist.py for every method of
`methods.BENCH_METHODS`; DeepInv-2k's and CMI-500's accuracy from the stated shorter runs of
`short_methods`, their totals extrapolated; docs/benchmarks.md), `quick`
(6 epochs, DeepInversion 2 batches of 100 steps, no cost table) and `runlocal` (the methods'
`runlocal` configs: tiny models, seconds per method).
"""

import ml_collections

from fastdfkd_jax import benchmark_config, config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(arg, quick=False, runlocal=False)
    config = benchmark_config.bench_config(config_args.sibling(__file__, "dfkd_fashion_mnist.py"))
    run = config.run
    run.teacher = ml_collections.ConfigDict(dict(arch="fmnist_cnn_teacher"))
    run.student = ml_collections.ConfigDict(dict(arch="fmnist_cnn_medium"))
    run.epochs = 150
    run.warmup = 10
    run.kd = ml_collections.ConfigDict(dict(steps=80))
    config.short_epochs = 6
    config.cost_g_steps = (2, 5)
    # One seed a method (a run is about 26 min alone on 2 CPU cores, 50 beside other work), from
    # the teacher kept in the repository (configs/teacher_fashion_mnist.py trained into
    # results/teachers/fashion_mnist); each finished run stored in
    # results/bench_fashion_mnist/<backend> and reused from there.
    config.teacher.checkpoint = config_args.repo_path(__file__, "results/teachers/fashion_mnist")
    config.teacher.train_config = config_args.sibling(__file__, "teacher_fashion_mnist.py")
    config.results_dir = config_args.repo_path(__file__, "results/bench_fashion_mnist/{backend}")
    if a.quick or a.runlocal:
        config.teacher.checkpoint = config.results_dir = ""
    if a.quick:
        run.epochs, run.warmup, run.kd.steps = 6, 1, 10
        config.timing_repeats = 3
        config.short_epochs, config.short_steps = 2, 100
        config.cost_g_steps = ()
    if a.runlocal:
        config.dfkd_arg = "{method},runlocal"
        config.run = ml_collections.ConfigDict(
            dict(sample_every_epochs=0, synthesis=benchmark_config.CHUNKS_OF_TWO)
        )
        benchmark_config.bench_runlocal(
            config, ("deepinv2k", "fast2"), short_epochs=2, short_steps=4
        )
    return config
