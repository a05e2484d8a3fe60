"""The acceleration benchmark: DeepInv-2k against Fast-2/5/10 on one teacher, side by side.

`run_benchmark(config, workdir)` (driven by `scripts/bench_acceleration.py`, configs
`configs/bench_<dataset>.py`):

1. Teacher: `config.teacher.checkpoint`, or, when empty and `config.teacher.train_config` names a
   teacher config, that teacher trained first into `workdir/teacher_run/teacher`.
2. Runs: every method of `config.methods` is one data-free run (`loop.train_and_evaluate`) in
   `workdir/<method>/`, from `<config.dfkd_config>.get_config(dfkd_arg.format(method=...))` (the
   exact distillation configs) with `config.run` applied to all of them (same teacher, student and
   KD schedule). A finished run is reused, an interrupted one resumes. With `deepinv_full=False`,
   DeepInversion's accuracy comes from a stated shorter run (`shorter_deepinv_config`) and its
   total synthesis time is extrapolated from its per-batch time (marked in every output).
3. Timing pass: each method's synthesis call compiled once (compile seconds recorded), one warm-up
   call, then `timing_repeats` calls round-robin over the methods (so load on a shared machine
   hits them alike), each ended by `block_until_ready()`; medians are reported. DeepInversion's
   per-batch time is the median of a call of `deepinv_timing_chunks` host-driven chunks, times
   `g_steps / (chunks * chunk_steps)`.
4. The cost of the exact meta-gradient (time, compiled memory) with and without `remat`.
5. A profile of a run's time (inner steps, meta update, student steps, evaluation, transfers,
   compilation).
6. `acceleration.json`, `acceleration.md` and `acceleration.png` in `workdir`.

Speed-up = DeepInv total synthesis seconds / the method's total synthesis seconds, both for
`epochs` synthesized batches; `speedup_per_batch` is the same ratio of the timing pass medians.
"""

import dataclasses
import importlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from fastdfkd_jax import data, loop, models, reporting, sharding
from fastdfkd_jax import teacher as teacher_lib
from fastdfkd_jax.evaluate import make_evaluator
from fastdfkd_jax.synthesis import pool as pool_lib

BASELINE = "deepinv2k"
MIB = 2**20
CACHE_DIR = "xla_cache"
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "acceleration.json", "acceleration.md", "acceleration.png"
# Variants of the meta-gradient cost table: (label, meta_gradient, remat).
COST_VARIANTS = (
    ("first_order", "first_order", False),
    ("exact", "exact", False),
    ("exact+remat", "exact", True),
)


# -- configs ------------------------------------------------------------------------------------


def apply_overrides(config: ml_collections.ConfigDict, overrides, prefix: str = "") -> None:
    """Sets every leaf of the nested `overrides` on `config`; unknown keys raise a ValueError."""
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in config:
            raise ValueError(f"run override {name!r} is not a key of the distillation config.")
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            apply_overrides(config[key], value, prefix=f"{name}.")
        else:
            config[key] = value


def method_config(bench: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """The distillation config of `method`: the dataset's dfkd config plus `bench.run`."""
    module = importlib.import_module(bench.dfkd_config)
    config = module.get_config(bench.dfkd_arg.format(method=method))
    apply_overrides(config, bench.run)
    return config


def shorter_deepinv_config(
    config: ml_collections.ConfigDict, epochs: int, steps: int
) -> ml_collections.ConfigDict:
    """DeepInversion on `epochs` batches of `steps` steps, with the same student training budget.

    Warmup shrinks in proportion to the epochs (at least 0, below `epochs`); `kd.steps` grows so
    that the student takes at least as many KD steps in total as in the full run, with the same
    cosine schedule length in steps.
    """
    if epochs < 1 or epochs > config.epochs:
        raise ValueError(f"deepinv_epochs must be in [1, epochs={config.epochs}], got {epochs}.")
    chunk = config.synthesis.chunk_steps
    if steps < 1 or (chunk and steps % chunk):
        raise ValueError(
            f"deepinv_steps={steps} must be >= 1 and a multiple of chunk_steps={chunk}."
        )
    short = ml_collections.ConfigDict(config.to_dict())
    full_kd_epochs = config.epochs - config.warmup
    warmup = min(epochs - 1, int(round(config.warmup * epochs / config.epochs)))
    short.epochs, short.warmup = epochs, warmup
    short.kd.steps = math.ceil(config.kd.steps * full_kd_epochs / (epochs - warmup))
    short.synthesis.g_steps = steps
    short.checkpoint.every_epochs = 1
    short.eval_every_epochs = 1
    return short


def describe_shorter_run(full: ml_collections.ConfigDict, short: ml_collections.ConfigDict) -> str:
    """One sentence saying exactly what the shorter DeepInversion run was."""
    return (
        f"DeepInversion with {short.synthesis.g_steps} steps per batch on {short.epochs} batches "
        f"(instead of {full.synthesis.g_steps} steps on {full.epochs}), warmup {short.warmup}, "
        f"{short.kd.steps} KD steps per epoch ({(short.epochs - short.warmup) * short.kd.steps} "
        f"in all, the full schedule has {(full.epochs - full.warmup) * full.kd.steps})"
    )


# -- setup and timing helpers -------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    """Everything a timing pass needs for one distillation config."""

    config: ml_collections.ConfigDict
    info: Any
    mesh: Any
    teacher: Any
    teacher_vars: Any
    student: Any
    synthesizer: Any
    tx: Any
    state: loop.DFKDState


def make_setup(config: ml_collections.ConfigDict, teacher_cache: dict | None = None) -> Setup:
    """The modules and a fresh `DFKDState` for `config`, placed as `loop.train_and_evaluate` does.

    Synthesis time does not depend on the weights' values, so a fresh state times like a trained
    one. `teacher_cache` (checkpoint -> (module, variables)) avoids reloading the same teacher.
    """
    info = data.get_info(config.dataset.name)
    key = (config.teacher.checkpoint, config.teacher.arch)
    if teacher_cache is not None and key in teacher_cache:
        teacher, teacher_vars = teacher_cache[key]
    else:
        teacher, teacher_vars = loop.load_teacher_checked(config, info)
        if teacher_cache is not None:
            teacher_cache[key] = (teacher, teacher_vars)
    student = models.create_model(config.student.arch, num_classes=info.num_classes)
    mesh = sharding.make_mesh(config.mesh)
    synthesizer = loop.build_synthesizer(config, info, teacher, student, mesh)
    tx = loop.make_kd_optimizer(config)
    student_rng, synth_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    teacher_vars = sharding.replicate(teacher_vars, mesh)
    state = loop.init_state(
        config, info, synthesizer, student, tx, teacher_vars, student_rng, synth_rng, mesh
    )
    return Setup(config, info, mesh, teacher, teacher_vars, student, synthesizer, tx, state)


def compile_synthesis(setup: Setup) -> tuple[Callable, float, Any]:
    """`(call, compile_seconds, compiled or None)` for one synthesis call of `setup`'s config."""
    call, seconds = loop.compile_synthesis(
        setup.config,
        setup.synthesizer,
        setup.state,
        setup.teacher_vars,
        jax.random.PRNGKey(0),
        jnp.asarray(setup.config.synthesis.adv, jnp.float32),
        mesh=setup.mesh,
    )
    compiled = call if hasattr(call, "memory_analysis") else None
    return call, seconds, compiled


class SynthesisTimer:
    """Times repeated synthesis calls of one config; the state is threaded through the calls."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.call, self.compile_seconds, self.compiled = compile_synthesis(setup)
        self.state = setup.state
        self.adv = jnp.asarray(setup.config.synthesis.adv, jnp.float32)
        self.calls = 0
        self.seconds: list[float] = []

    def once(self) -> float:
        """One call, ended by `block_until_ready()`; returns its seconds."""
        rng = jax.random.fold_in(jax.random.PRNGKey(self.setup.config.seed), self.calls)
        self.calls += 1
        start = time.perf_counter()
        self.state, images, metrics = self.call(self.state, self.setup.teacher_vars, rng, self.adv)
        jax.block_until_ready((self.state, images, metrics))
        return time.perf_counter() - start

    def warm_up(self) -> None:
        self.once()

    def record(self) -> None:
        self.seconds.append(self.once())


def summarize(seconds: Sequence[float], scale: float = 1.0) -> dict:
    """Median, min and max of `seconds`, each times `scale`, and the count."""
    if not seconds:
        raise ValueError("No timed calls to summarize.")
    return dict(
        median_s=statistics.median(seconds) * scale,
        min_s=min(seconds) * scale,
        max_s=max(seconds) * scale,
        n=len(seconds),
    )


def time_round_robin(timers: dict, repeats: int) -> None:
    """Warms every timer up, then records `repeats` calls of each, interleaved."""
    for timer in timers.values():
        timer.warm_up()
    for _ in range(repeats):
        for timer in timers.values():
            timer.record()


def memory_bytes(compiled) -> dict:
    """The compiled executable's memory: temp, argument, output and their sum (bytes).

    On CPU this is XLA's static buffer assignment, deterministic and comparable across variants;
    it is what a call needs at its peak, not a measurement of the process.
    """
    analysis = compiled.memory_analysis()
    temp = int(analysis.temp_size_in_bytes)
    argument = int(analysis.argument_size_in_bytes)
    output = int(analysis.output_size_in_bytes)
    return dict(
        temp_bytes=temp,
        argument_bytes=argument,
        output_bytes=output,
        peak_bytes=temp + argument + output,
    )


# -- the table's arithmetic ---------------------------------------------------------------------


def deepinv_per_batch_scale(config: ml_collections.ConfigDict, timing_chunks: int) -> tuple:
    """`(timed steps, scale)`: a timed call of `timed steps` steps times `scale` is one batch."""
    chunk = config.synthesis.chunk_steps or config.synthesis.g_steps
    timed = min(config.synthesis.g_steps, chunk * timing_chunks)
    return timed, config.synthesis.g_steps / timed


def speedups(rows: list[dict], baseline: str = BASELINE) -> list[dict]:
    """Adds `speedup` (total synthesis seconds) and `speedup_per_batch` against `baseline`.

    Rows need `method`, `synthesis_seconds` (for `batches` batches), `batches` and
    `seconds_per_batch`. Totals are compared for the same number of batches: a row with other
    `batches` than the baseline is rescaled to the baseline's count first.
    """
    base = next((r for r in rows if r["method"] == baseline), None)
    for row in rows:
        if base is None:
            row["speedup"] = row["speedup_per_batch"] = None
            continue
        total = row["synthesis_seconds"] * base["batches"] / row["batches"]
        row["speedup"] = base["synthesis_seconds"] / total
        row["speedup_per_batch"] = base["seconds_per_batch"] / row["seconds_per_batch"]
    return rows


def target_check(rows: list[dict], method: str = "fast5", points: float = 2.0, speedup=100.0):
    """Whether `method` is within `points` accuracy points of DeepInv-2k at >= `speedup`x."""
    by_name = {r["method"]: r for r in rows}
    if method not in by_name or BASELINE not in by_name:
        return None
    row, base = by_name[method], by_name[BASELINE]
    if row["student_accuracy"] is None or base["student_accuracy"] is None:
        return None
    gap = 100.0 * (base["student_accuracy"] - row["student_accuracy"])
    return dict(
        method=method,
        accuracy_gap_points=gap,
        speedup=row["speedup"],
        met=bool(gap <= points and row["speedup"] is not None and row["speedup"] >= speedup),
        baseline_extrapolated=base["extrapolated"],
        points=points,
        min_speedup=speedup,
    )


# -- the runs -----------------------------------------------------------------------------------


def ensure_teacher(bench: ml_collections.ConfigDict, workdir: str) -> str:
    """The teacher checkpoint: the configured one, or one trained by `teacher.train_config`."""
    if bench.teacher.checkpoint:
        return bench.teacher.checkpoint
    if not bench.teacher.train_config:
        raise ValueError(
            "bench teacher.checkpoint is empty and no teacher.train_config is set: pass "
            "--config.teacher.checkpoint=DIR (a teacher directory)."
        )
    run_dir = os.path.join(workdir, "teacher_run")
    teacher_dir = os.path.join(run_dir, "teacher")
    if not os.path.exists(os.path.join(teacher_dir, "meta.json")):
        logging.info("No teacher given: training %s into %s.", bench.teacher.train_config, run_dir)
        teacher_config = importlib.import_module(bench.teacher.train_config).get_config()
        teacher_config.progress_bar = bench.progress_bar
        if bench.teacher.train_epochs:
            teacher_config.train.epochs = bench.teacher.train_epochs
        os.makedirs(run_dir, exist_ok=True)
        teacher_lib.train_and_evaluate(teacher_config, run_dir)
    return teacher_dir


# Keys that do not change what a run computes: a finished run that differs only in them is reused.
DISPLAY_ONLY_KEYS = ("progress_bar",)


def comparable_config(config: dict) -> dict:
    """`config` (a run's config as a dict, e.g. summary.json's) reduced to what decides the result.

    The teacher checkpoint path is made absolute (a run started with a relative path is the same
    run) and the display-only keys are dropped. JSON round trip: tuples compare equal to lists.
    """
    config = json.loads(json.dumps(config, default=list))
    for key in DISPLAY_ONLY_KEYS:
        config.pop(key, None)
    teacher = config.get("teacher", {})
    if teacher.get("checkpoint"):
        teacher["checkpoint"] = os.path.abspath(teacher["checkpoint"])
    return config


def run_method(config: ml_collections.ConfigDict, run_dir: str) -> dict:
    """`loop.train_and_evaluate` in `run_dir`, or its summary if that run already finished.

    "Finished" means `run_dir/summary.json` exists and its config equals `config` up to
    `comparable_config` (so a standalone run of the same config, copied into `run_dir`, is reused).
    """
    path = os.path.join(run_dir, "summary.json")
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
        same = comparable_config(summary.get("config", {})) == comparable_config(config.to_dict())
        if same:
            logging.info("Reusing the finished run in %s.", run_dir)
            return summary
    os.makedirs(run_dir, exist_ok=True)
    return loop.train_and_evaluate(config, run_dir)


def method_label(method: str) -> str:
    """Display names of the paper's table."""
    labels = {
        "deepinv2k": "DeepInv-2k",
        "fast2": "Fast-2",
        "fast5": "Fast-5",
        "fast10": "Fast-10",
        "fast5_exact": "Fast-5 (exact meta-grad)",
        "fast5_nometa": "Fast-5 (no meta)",
    }
    return labels.get(method, method)


def measure_cost(bench, base_config, teacher_cache) -> list[dict]:
    """Time and compiled memory of one Fast-k synthesis call per meta-gradient variant."""
    timers, meta = {}, {}
    for g_steps in bench.cost_g_steps:
        for label, meta_gradient, remat in COST_VARIANTS:
            config = ml_collections.ConfigDict(base_config.to_dict())
            _apply_fast(config, g_steps)
            config.synthesis.meta_gradient = meta_gradient
            config.synthesis.remat = remat
            timer = SynthesisTimer(make_setup(config, teacher_cache))
            name = f"{label}/g{g_steps}"
            timers[name] = timer
            meta[name] = dict(
                variant=label, g_steps=g_steps, remat=remat, **memory_bytes(timer.compiled)
            )
            logging.info("cost %s: compiled in %.1f s", name, timer.compile_seconds)
    time_round_robin(timers, bench.timing_repeats)
    rows = []
    for name, timer in timers.items():
        row = dict(meta[name], compile_seconds=timer.compile_seconds, **summarize(timer.seconds))
        rows.append(row)
    for row in rows:
        ref = next(
            r for r in rows if r["g_steps"] == row["g_steps"] and r["variant"] == "first_order"
        )
        row["time_vs_first_order"] = row["median_s"] / ref["median_s"]
        row["memory_vs_first_order"] = row["peak_bytes"] / ref["peak_bytes"]
        row["temp_vs_first_order"] = row["temp_bytes"] / max(ref["temp_bytes"], 1)
    return rows


def _apply_fast(config, g_steps):
    from configs import dfkd_common  # noqa: PLC0415 (configs is a top-level package of the repo)

    dfkd_common.fast(config, g_steps)


def profile_run(bench, config, summary, teacher_cache) -> dict:
    """Where one run's time goes: measured totals of the run and timed pieces of one epoch.

    Pieces (medians of `timing_repeats` calls, each ended by `block_until_ready()`): the inner
    steps alone (`FastSynthesizer.inner_run`, jitted), the whole synthesis call (the rest of it is
    the meta update, BN memory update and pool insert), one KD step, one evaluation of the test
    split, and the device-to-host transfer of an epoch's metrics and images.
    """
    setup = make_setup(config, teacher_cache)
    # The timers donate the states they are given: keep private copies for the other pieces.
    state = jax.tree.map(jnp.copy, setup.state)
    kd_state = jax.tree.map(jnp.copy, setup.state)
    synth = SynthesisTimer(setup)
    synthesizer = setup.synthesizer
    adv = jnp.asarray(config.synthesis.adv, jnp.float32)
    rng = jax.random.PRNGKey(config.seed)
    z0 = jax.random.normal(rng, synthesizer.latent_shape())
    targets = jax.random.randint(rng, (synthesizer.batch_size,), 0, synthesizer.num_classes)

    def inner(params):
        return synthesizer.inner_run(
            params,
            state.synthesizer.batch_stats,
            z0,
            targets,
            rng,
            setup.teacher_vars,
            state.student.variables,
            state.bn_memory,
            adv,
        )

    inner_fn = jax.jit(inner).lower(state.synthesizer.params).compile()
    kd_fn, kd_compile = loop.compile_kd_step(
        config,
        setup.info,
        setup.student,
        setup.teacher,
        setup.tx,
        kd_state,
        setup.teacher_vars,
        rng,
        mesh=setup.mesh,
    )
    # One batch in the KD state's pool, so the student samples filled slots.
    kd_state = kd_state.replace(
        pool=pool_lib.add(
            kd_state.pool, jnp.full((synthesizer.batch_size, *setup.info.image_shape), 0.5)
        )
    )
    test = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
    evaluate = make_evaluator(
        setup.student, setup.info.mean, setup.info.std, setup.mesh, config.eval_batch_size
    )
    pieces = {
        name: [] for name in ("inner_steps", "synthesis_call", "kd_step", "evaluation", "transfer")
    }

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        return time.perf_counter() - start, out

    for i in range(bench.timing_repeats + 1):  # round 0 is the warm-up
        step_rng = jax.random.fold_in(rng, i)
        t_inner, _ = timed(lambda: inner_fn(state.synthesizer.params))
        t_synth = synth.once()
        t_kd, (kd_state, _) = timed(lambda: kd_fn(kd_state, setup.teacher_vars, step_rng))
        t_eval, _ = timed(lambda: evaluate(kd_state.student.variables, test))
        synth.state, images, metrics = synth.call(synth.state, setup.teacher_vars, step_rng, adv)
        jax.block_until_ready((synth.state, images, metrics))
        t_transfer, _ = timed(lambda: jax.device_get((metrics, images)))
        if i == 0:
            continue
        for name, value in zip(pieces, (t_inner, t_synth, t_kd, t_eval, t_transfer), strict=True):
            pieces[name].append(value)
    medians = {name: statistics.median(v) for name, v in pieces.items()}
    epochs, kd_epochs = config.epochs, config.epochs - config.warmup
    evals = math.ceil(epochs / config.eval_every_epochs)
    projected = {
        "inner synthesis steps": medians["inner_steps"] * epochs,
        "meta update + BN memory + pool insert": max(
            medians["synthesis_call"] - medians["inner_steps"], 0.0
        )
        * epochs,
        "student (KD) steps": medians["kd_step"] * config.kd.steps * kd_epochs,
        "evaluation": medians["evaluation"] * evals,
        "host-device transfers (metrics, images)": medians["transfer"] * epochs,
        # The run's own compile time; the timing pass may have loaded the synthesis from the cache.
        "compilation (synthesis + KD)": summary.get("compile_seconds")
        or synth.compile_seconds + kd_compile,
    }
    measured = {
        key: summary.get(key)
        for key in (
            "synthesis_seconds",
            "kd_seconds",
            "eval_seconds",
            "compile_seconds",
            "total_seconds",
        )
    }
    if all(v is not None for v in measured.values()):
        accounted = sum(v for k, v in measured.items() if k != "total_seconds")
        measured["other_seconds"] = measured["total_seconds"] - accounted
    return dict(
        method=config.method,
        epochs=epochs,
        kd_steps_per_epoch=config.kd.steps,
        per_call_median_s=medians,
        projected_seconds=projected,
        run_measured_seconds=measured,
    )


def run_benchmark(bench: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the benchmark that `bench` describes; writes and returns `acceleration.json`'s dict."""
    start = time.perf_counter()
    if not bench.methods:
        raise ValueError("bench methods is empty.")
    if bench.timing_repeats < 1:
        raise ValueError(f"timing_repeats must be >= 1, got {bench.timing_repeats}.")
    os.makedirs(workdir, exist_ok=True)
    if bench.compilation_cache:
        enable_compilation_cache(os.path.join(workdir, CACHE_DIR))
    teacher_dir = os.path.abspath(ensure_teacher(bench, workdir))
    configs = {}
    for method in bench.methods:
        config = method_config(bench, method)
        config.teacher.checkpoint = teacher_dir
        config.progress_bar = bench.progress_bar
        configs[method] = config

    # 1. The runs (accuracy and the run's own synthesis time).
    summaries, notes = {}, {}
    for method, config in configs.items():
        run_config = config
        if config.synthesis.method == "deepinversion" and not bench.deepinv_full:
            run_config = shorter_deepinv_config(config, bench.deepinv_epochs, bench.deepinv_steps)
            notes[method] = describe_shorter_run(config, run_config)
        if bench.timing_only:
            notes[method] = "not run (timing_only): synthesis time extrapolated, no accuracy"
            summaries[method] = timing_only_summary(config)
            continue
        logging.info("Run %s%s", method, f" ({notes[method]})" if method in notes else "")
        summaries[method] = run_method(run_config, os.path.join(workdir, method))

    # 2. The timing pass: compile once each, warm up, then interleaved repeats.
    teacher_cache: dict = {}
    timers, scales = {}, {}
    for method, config in configs.items():
        timed_config, scale = config, 1.0
        if config.synthesis.method == "deepinversion":
            steps, scale = deepinv_per_batch_scale(config, bench.deepinv_timing_chunks)
            timed_config = ml_collections.ConfigDict(config.to_dict())
            timed_config.synthesis.g_steps = steps
        timers[method] = SynthesisTimer(make_setup(timed_config, teacher_cache))
        scales[method] = scale
        logging.info("Timing %s: compiled in %.1f s", method, timers[method].compile_seconds)
    time_round_robin(timers, bench.timing_repeats)

    rows = []
    for method, config in configs.items():
        summary, timing = summaries[method], summarize(timers[method].seconds, scales[method])
        extrapolated = method in notes
        batches = config.epochs
        if extrapolated:
            total = timing["median_s"] * batches
        else:
            total = summary["synthesis_seconds"] * batches / summary["synthesis_calls"]
        rows.append(
            dict(
                method=method,
                label=method_label(method),
                synthesis_method=config.synthesis.method,
                g_steps=config.synthesis.g_steps,
                meta_gradient=summary["meta_gradient"],
                student_accuracy=summary["student_test_accuracy"],
                teacher_accuracy=summary["teacher_test_accuracy"],
                batches=batches,
                synthesis_seconds=total,
                run_synthesis_seconds=summary["synthesis_seconds"],
                run_synthesis_calls=summary["synthesis_calls"],
                run_total_seconds=summary["total_seconds"],
                seconds_per_batch=timing["median_s"],
                seconds_per_batch_min=timing["min_s"],
                seconds_per_batch_max=timing["max_s"],
                timing_calls=timing["n"],
                timing_scale=scales[method],
                compile_seconds=summary["synthesis_compile_seconds"]
                or timers[method].compile_seconds,
                timing_compile_seconds=timers[method].compile_seconds,
                extrapolated=extrapolated,
                accuracy_from=notes.get(method, "the full run"),
            )
        )
    speedups(rows)
    del timers

    base = configs[bench.methods[0]]
    result = dict(
        dataset=base.dataset.name,
        teacher=dict(arch=base.teacher.arch, checkpoint=teacher_dir),
        student=base.student.arch,
        schedule=dict(
            epochs=base.epochs,
            warmup=base.warmup,
            kd_steps=base.kd.steps,
            kd_batch_size=base.kd.batch_size,
            synthesis_batch_size=base.synthesis.batch_size,
        ),
        device=device_description(),
        timing=dict(
            repeats=bench.timing_repeats,
            method=(
                "jitted, compiled once (compile seconds: the run's compilation of its synthesis "
                "call), one warm-up call, then medians of repeated calls interleaved across "
                "methods, each ended by block_until_ready()"
            ),
            deepinv=(
                f"median of a call of {bench.deepinv_timing_chunks} host-driven chunk(s) of "
                f"{base.synthesis.chunk_steps or 'all'} steps, scaled to g_steps"
                if any(c.synthesis.method == "deepinversion" for c in configs.values())
                else None
            ),
        ),
        rows=rows,
        target=target_check(rows),
    )

    write_outputs(result, workdir)  # the main table first: the rest takes a while

    # 3. Exact against first-order meta-gradient, and the profile.
    fast_base = next((c for c in configs.values() if c.synthesis.method == "fast"), None)
    if bench.cost_g_steps and fast_base is not None:
        result["meta_gradient_cost"] = measure_cost(bench, fast_base, teacher_cache)
        write_outputs(result, workdir)
    if bench.profile_method and bench.profile_method in configs:
        result["profile"] = profile_run(
            bench, configs[bench.profile_method], summaries[bench.profile_method], teacher_cache
        )
    result["benchmark_seconds"] = time.perf_counter() - start
    write_outputs(result, workdir)
    return result


def enable_compilation_cache(path: str) -> None:
    """JAX's persistent compilation cache in `path`, for every compile however short.

    The timing pass compiles the same synthesis functions as the runs did; with the cache it loads
    them instead of compiling them a second time. Compile seconds are the runs' (a fresh workdir
    starts with an empty cache, so they are real compilations).
    """
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def timing_only_summary(config: ml_collections.ConfigDict) -> dict:
    """The summary keys the table reads, for a method that was only timed, not run."""
    s = config.synthesis
    return dict(
        meta_gradient=s.meta_gradient if s.method == "fast" and s.meta else "none",
        student_test_accuracy=None,
        teacher_test_accuracy=None,
        synthesis_seconds=None,
        synthesis_calls=0,
        total_seconds=None,
        synthesis_compile_seconds=None,
    )


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def device_description() -> str:
    device = jax.devices()[0]
    return (
        f"{jax.device_count()} x {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} host CPU cores, {platform.processor() or platform.machine()}, "
        f"jax {jax.__version__}"
    )


# -- outputs ------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    """The benchmark's tables as markdown."""
    rows = result["rows"]
    sched = result["schedule"]
    lines = [
        f"# Acceleration benchmark: {result['dataset']}",
        "",
        f"Teacher `{result['teacher']['arch']}` (test accuracy "
        f"{_percent(rows[0]['teacher_accuracy'])}%) -> student `{result['student']}`; "
        f"{sched['epochs']} synthesized batches of {sched['synthesis_batch_size']}, warmup "
        f"{sched['warmup']}, {sched['kd_steps']} KD steps of {sched['kd_batch_size']} per epoch. "
        f"Device: {result['device']}.",
        "",
        "| method | g_steps | meta-gradient | student acc. (%) | synthesis s (total) "
        "| s / batch (median) | compile s | speed-up vs DeepInv-2k | speed-up per batch |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " *" if r["extrapolated"] else ""
        speed = f"{r['speedup']:.1f}x" if r["speedup"] is not None else "n/a"
        per_batch = (
            f"{r['speedup_per_batch']:.1f}x" if r["speedup_per_batch"] is not None else "n/a"
        )
        lines.append(
            f"| {r['label']} | {r['g_steps']} | {r['meta_gradient']} | "
            f"{_percent(r['student_accuracy'])}{mark} | {r['synthesis_seconds']:.1f}{mark} | "
            f"{r['seconds_per_batch']:.4f} | {r['compile_seconds']:.1f} | {speed} | {per_batch} |"
        )
    lines.append("")
    timed_only = [r["label"] for r in rows if r["student_accuracy"] is None]
    if timed_only:
        lines.append(
            f"\\* {', '.join(timed_only)}: EXTRAPOLATED, not run (timing_only): total synthesis "
            f"seconds = median seconds per batch x {rows[0]['batches']} batches; no accuracy."
        )
    for r in rows:
        if r["student_accuracy"] is None:
            continue
        if r["extrapolated"]:
            lines.append(
                f"\\* {r['label']}: EXTRAPOLATED. Total synthesis seconds = median seconds per "
                f"batch x {r['batches']} batches. Student accuracy from a shorter run: "
                f"{r['accuracy_from']}"
                f" (its measured synthesis time: {r['run_synthesis_seconds']:.1f} s for "
                f"{r['run_synthesis_calls']} batches)."
            )
    lines += [
        "",
        f"Timing: {result['timing']['method']}; {result['timing']['repeats']} timed calls per "
        "method. Totals of non-extrapolated rows are the runs' measured synthesis seconds."
        + (
            f" DeepInv-2k per batch: {result['timing']['deepinv']}."
            if result["timing"]["deepinv"]
            else ""
        ),
        "Speed-up = DeepInv-2k total synthesis seconds / the method's, for the same number of "
        "batches; per batch = the ratio of the timing medians.",
    ]
    target = result.get("target")
    if target:
        lines += [
            "",
            f"Target (Fast-5 within {target['points']:g} points of DeepInv-2k at >= "
            f"{target['min_speedup']:g}x): gap {target['accuracy_gap_points']:.2f} points at "
            f"{target['speedup']:.1f}x -> {'MET' if target['met'] else 'NOT MET'}"
            + (" (DeepInv-2k extrapolated)" if target["baseline_extrapolated"] else "")
            + ".",
        ]
    cost = result.get("meta_gradient_cost")
    if cost:
        lines += [
            "",
            "## Exact against first-order meta-gradient (one synthesis call)",
            "",
            "Memory: the compiled executable's `memory_analysis()`, temp + argument + output "
            "bytes. Compile seconds of executables the runs had compiled already (the runs' own "
            "meta-gradient and g_steps) are loads from the compilation cache.",
            "",
            "| g_steps | variant | s / call (median) | x first-order | peak MiB | temp MiB "
            "| x first-order (peak) | compile s |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in cost:
            lines.append(
                f"| {c['g_steps']} | {c['variant']} | {c['median_s']:.4f} | "
                f"{c['time_vs_first_order']:.2f} | {c['peak_bytes'] / MIB:.2f} | "
                f"{c['temp_bytes'] / MIB:.2f} | {c['memory_vs_first_order']:.2f} | "
                f"{c['compile_seconds']:.1f} |"
            )
    profile = result.get("profile")
    if profile:
        total = sum(profile["projected_seconds"].values())
        lines += [
            "",
            f"## Where a {method_label(profile['method'])} run's time goes",
            "",
            f"Projected from timed pieces ({profile['epochs']} epochs, "
            f"{profile['kd_steps_per_epoch']} KD steps per epoch after warmup):",
            "",
            "| part | seconds | share |",
            "|---|---:|---:|",
        ]
        for name, seconds in profile["projected_seconds"].items():
            lines.append(f"| {name} | {seconds:.1f} | {100 * seconds / total:.1f}% |")
        lines.append(f"| total | {total:.1f} | 100% |")
        measured = profile["run_measured_seconds"]
        if measured.get("total_seconds") is not None:
            lines += [
                "",
                "Measured in the run itself (summary.json): "
                + ", ".join(
                    f"{k.replace('_seconds', '')} {v:.1f} s"
                    for k, v in measured.items()
                    if v is not None
                )
                + " (other = checkpoints, metrics, samples, data loading).",
            ]
    lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Student accuracy against total synthesis seconds (log axis); extrapolated points hollow."""
    import matplotlib  # noqa: PLC0415 (optional dependency, only needed for the figure)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = result["rows"]
    timed_only = all(r["student_accuracy"] is None for r in rows)
    for i, r in enumerate(rows):
        if timed_only:  # no accuracies: total synthesis seconds per method
            ax.barh(
                [i], [r["synthesis_seconds"]], color="C0", alpha=0.5 if r["extrapolated"] else 1
            )
            continue
        if r["student_accuracy"] is None:
            continue
        x, y = r["synthesis_seconds"], 100 * r["student_accuracy"]
        face = "none" if r["extrapolated"] else None
        ax.scatter([x], [y], s=50, facecolors=face, edgecolors="C0" if face else None)
        label = r["label"] + (" (time extrapolated)" if r["extrapolated"] else "")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("total synthesis seconds (log)")
    if timed_only:
        ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
        ax.set_title(f"{result['dataset']}: total synthesis time (extrapolated, not run)")
    else:
        ax.set_ylabel("student test accuracy (%)")
        ax.set_title(f"{result['dataset']}: accuracy against synthesis time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict, workdir: str) -> None:
    """`acceleration.json`, `acceleration.md` and `acceleration.png` in `workdir`."""
    if not reporting.is_primary():
        return
    with open(os.path.join(workdir, JSON_NAME), "w") as f:
        json.dump(result, f, indent=2, default=float)
    with open(os.path.join(workdir, MARKDOWN_NAME), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(workdir, PLOT_NAME))
    logging.info("Wrote %s, %s, %s in %s.", JSON_NAME, MARKDOWN_NAME, PLOT_NAME, workdir)


def load_result(workdir: str) -> dict:
    with open(os.path.join(workdir, JSON_NAME)) as f:
        return json.load(f)


__all__ = [
    "apply_overrides",
    "markdown",
    "method_config",
    "run_benchmark",
    "shorter_deepinv_config",
    "speedups",
    "target_check",
]
