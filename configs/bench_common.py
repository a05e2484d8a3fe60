"""Keys shared by every acceleration-benchmark config (`configs/bench_<dataset>.py`).

`scripts/bench_acceleration.py` runs every method of `methods` side by side (same teacher, student
and KD schedule: `run` is applied to each method's distillation config) and writes
`acceleration.{json,md,png}`; see `fastdfkd_jax/bench.py` and docs/benchmarks.md.
"""

import ml_collections

METHODS = ("deepinv2k", "fast2", "fast5", "fast10", "fast5_exact", "fast5_nometa")


def bench_config(dfkd_config: str, dfkd_arg: str = "{method}") -> ml_collections.ConfigDict:
    """The benchmark keys. `dfkd_config` is the module whose `get_config(dfkd_arg.format(...))`
    gives each method's distillation config (e.g. 'configs.dfkd_digits')."""
    config = ml_collections.ConfigDict()
    config.dfkd_config = dfkd_config
    config.dfkd_arg = dfkd_arg
    # checkpoint '' + train_config: train that teacher first into WORKDIR/teacher_run/teacher.
    # train_epochs: that teacher's epochs (0: its config's).
    config.teacher = ml_collections.ConfigDict(dict(checkpoint="", train_config="", train_epochs=0))
    # Applied to every method's distillation config (nested like it; unknown keys are refused).
    config.run = ml_collections.ConfigDict()
    config.methods = METHODS
    config.timing_repeats = 5  # timed synthesis calls per method (medians reported)
    # DeepInv-2k: run in full, or take its accuracy from a shorter run (deepinv_epochs batches of
    # deepinv_steps steps, same total KD steps) and extrapolate its total synthesis time from the
    # measured per-batch time (marked "extrapolated" in every output).
    config.deepinv_full = False
    config.deepinv_epochs = 4
    config.deepinv_steps = 2000
    config.deepinv_timing_chunks = 2  # host-driven chunks per timed DeepInversion call
    # Exact vs first-order meta-gradient cost (time, compiled memory, +-remat) for these g_steps.
    config.cost_g_steps = (2, 5, 10)
    # Skip the runs: per-batch times and extrapolated totals only (no accuracies).
    config.timing_only = False
    config.profile_method = "fast5"  # '' skips the profile
    config.progress_bar = True
    # JAX's persistent compilation cache in WORKDIR/xla_cache: the timing pass then loads the
    # runs' executables instead of compiling them again.
    config.compilation_cache = True
    return config
