"""The benchmark job's keys (`bench_config`) and its runlocal variant, for `configs/bench_*.py`.

What the keys do: `fastdfkd_jax.benchmark` (the job) and docs/benchmarks.md.
"""

import ml_collections

from fastdfkd_jax import methods


def bench_config(dfkd_config_file: str, dfkd_arg: str = "{method}") -> ml_collections.ConfigDict:
    """The benchmark keys. `dfkd_config_file` is the distillation config file (a path) whose
    `get_config(dfkd_arg.format(method=...))` gives each method's config.
    """
    config = ml_collections.ConfigDict()
    config.job = "benchmark"
    config.dfkd_config = dfkd_config_file
    config.dfkd_arg = dfkd_arg
    # checkpoint '' + train_config (a teacher config file, path[:arg]): train that teacher first
    # into WORKDIR/teacher_run/teacher. train_epochs: that teacher's epochs (0: its config's).
    config.teacher = ml_collections.ConfigDict(dict(checkpoint="", train_config="", train_epochs=0))
    # Applied to every method's distillation config (nested like it; unknown keys are refused).
    config.run = ml_collections.ConfigDict()
    config.methods = methods.BENCH_METHODS
    # Each method runs once per seed (synthesis and student; the teacher is fixed), except the
    # `single_seed_methods` (too slow to repeat), which run with the first seed only.
    config.seeds = (0,)
    config.single_seed_methods = methods.SINGLE_SEED_METHODS
    # A results folder (in the repository: results/bench_<data>/<backend>) where each finished
    # run's record (summary.json, metrics.jsonl; no checkpoints) is stored per method and seed, and
    # reused instead of running the method again ('' stores nothing).
    config.results_dir = ""
    # Only the runs (each stored as it finishes): no timing pass, cost table or profile.
    config.runs_only = False
    config.timing_repeats = 5  # timed synthesis calls per method (medians reported)
    # Methods too slow to run in full here (DeepInv-2k, CMI-500): their accuracy from a shorter run
    # (short_epochs batches of their own g_steps, or short_steps when > 0, with the same total KD
    # steps and schedule length) and their total synthesis time extrapolated from the measured
    # per-batch time (marked "extrapolated" in every output).
    config.short_methods = ("deepinv2k", "cmi500")
    config.short_epochs = 4
    config.short_steps = 0
    # Methods whose steps run as host-driven chunks (DeepInversion, CMI): a timed call runs this
    # many chunks, scaled to g_steps.
    config.timing_chunks = 2
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


# The runlocal benchmarks' chunked methods in host-driven chunks of two steps (a `synthesis`
# override: their own blocks' `chunk_steps`).
CHUNKS_OF_TWO = dict(deepinversion=dict(chunk_steps="2"), cmi=dict(chunk_steps="2"))


def bench_runlocal(
    config: ml_collections.ConfigDict,
    methods: tuple[str, ...],
    short_epochs: int,
    short_steps: int,
    cost_g_steps: tuple[int, ...] = (),
) -> None:
    """A benchmark of seconds per method (tests, smoke runs): few methods and timed calls, Fast-2
    profiled, no progress bar, no compilation cache.
    """
    config.methods = methods
    config.short_epochs, config.short_steps = short_epochs, short_steps
    config.timing_repeats = 2
    config.cost_g_steps = cost_g_steps
    config.profile_method = "fast2"
    config.progress_bar = False
    config.compilation_cache = False
