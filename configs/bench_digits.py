r"""Acceleration benchmark on digits (8x8x1): the paper's methods side by side, one command.

  python -m fastdfkd_jax.main --config=configs/bench_digits.py --workdir=runs/bench_digits
  python -m fastdfkd_jax.main --config=configs/bench_digits.py:quick \
      --workdir=runs/bench_digits_quick

(`scripts/bench_acceleration.py` takes the same flags.) Variants (the argument):
  '' (full): the 40-epoch digits schedule of configs/dfkd_digits.py for every method of
    `methods.BENCH_METHODS`, each in full (DeepInv-2k's 40 x 2000 steps: 39 min on 2
    CPU cores in its stored record; `--config.short_methods='("deepinv2k",)'` takes its accuracy from a stated shorter
    run with the same total KD steps instead, its total extrapolated), seeds 0, 1, 2 (DeepInv-2k
    and CMI-500: seed 0), from the teacher in results/teachers/digits; every finished run is stored
    in results/bench_digits/<backend>/<method>/seed<k> and reused from there.
  quick: 4 epochs, DeepInversion shortened to 2 batches of 100 steps, teacher trained 10 epochs, no
    cost table; about 5 minutes.
  runlocal: the methods' `runlocal` configs (tiny models), DeepInversion 2 batches of 4 steps; tens
    of seconds (the tests).
With `teacher.checkpoint` empty (quick, runlocal), the teacher of configs/teacher_digits.py is
trained first into WORKDIR/teacher_run/teacher.
"""

import ml_collections

from fastdfkd_jax import benchmark_config, config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(arg, quick=False, runlocal=False)
    config = benchmark_config.bench_config(config_args.sibling(__file__, "dfkd_digits.py"))
    config.teacher.train_config = config_args.sibling(__file__, "teacher_digits.py")
    run = config.run
    run.teacher = ml_collections.ConfigDict(dict(arch="digits_cnn_teacher"))
    run.student = ml_collections.ConfigDict(dict(arch="digits_cnn_small"))
    run.epochs = 40
    run.warmup = 5
    run.kd = ml_collections.ConfigDict(dict(steps=50))
    config.short_methods = ()  # every method in full, DeepInv-2k and CMI-500 included
    # Three seeds a method (DeepInv-2k and CMI-500: one), from the teacher kept in the repository;
    # each finished run is stored in results/bench_digits/<backend> and reused from there.
    config.seeds = (0, 1, 2)
    config.teacher.checkpoint = config_args.repo_path(__file__, "results/teachers/digits")
    config.results_dir = config_args.repo_path(__file__, "results/bench_digits/{backend}")
    if a.quick or a.runlocal:
        config.seeds = (0,)
        config.teacher.checkpoint = config.results_dir = ""
        run.epochs, run.warmup, run.kd.steps = 4, 1, 10
        config.timing_repeats = 3
        config.short_methods = ("deepinv2k", "cmi500")
        config.short_epochs, config.short_steps = 2, 100
        config.cost_g_steps = ()  # --config.cost_g_steps='(2,)' adds it (about 45 s)
        config.teacher.train_epochs = 10  # about 99% test accuracy
    if a.runlocal:
        config.dfkd_arg = "{method},runlocal"
        config.run = ml_collections.ConfigDict(
            dict(sample_every_epochs=0, synthesis=benchmark_config.CHUNKS_OF_TWO)
        )
        benchmark_config.bench_runlocal(
            config,
            ("deepinv2k", "fast2", "fast5_exact"),
            short_epochs=2,
            short_steps=4,
            cost_g_steps=(2,),
        )
    return config
