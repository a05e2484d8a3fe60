"""The acceleration benchmark: the paper's methods on one teacher, side by side.

`run_benchmark(bench, workdir)` (the `benchmark` job: `fastdfkd --config=configs/bench_<data>.py`;
`scripts/bench_acceleration.py` is the same):

1. Teacher (`runs.ensure_teacher`): `teacher.checkpoint`, or the teacher config
   `teacher.train_config` trained first into `workdir/teacher_run/teacher`.
2. Runs (`runs.run_method`): every method of `methods` is one data-free run in
   `workdir/<method>/`, its config `configs.method_config` (same teacher, student and KD schedule
   for all). A finished run is reused, an interrupted one resumes. The methods of
   `short_methods` (too slow to run in full) get their accuracy from a stated shorter run
   (`configs.shorter_config`) and their total synthesis time extrapolated from their per-batch
   time (marked in every output).
3. Timing pass (`timers`): each method's synthesis call compiled once, one warm-up call, then
   `timing_repeats` calls round-robin over the methods (so load on a shared machine hits them
   alike), each ended by `block_until_ready()`; medians are reported. The per-batch time of a
   chunked method (DeepInversion, CMI) is the median of a call of `timing_chunks` host-driven
   chunks, times `g_steps / (chunks * chunk_steps)`. A generative method's call is one round (its
   generator step and the round's fresh KD batches); per epoch it makes `calls_per_epoch`.
4. The cost of the exact meta-gradient (time, compiled memory) with and without `remat`, and a
   profile of a run's time (`profile`).
5. `acceleration.json`, `acceleration.md` and `acceleration.png` in `workdir` (`report`).

Speed-up = DeepInv total synthesis seconds / the method's total synthesis seconds, both for the
same schedule of `epochs` epochs; `speedup_per_batch` is the same ratio of the timing pass medians
(per epoch: a call's median times its calls per epoch).
"""

import os
import time

import ml_collections
from absl import logging

from fastdfkd_jax import compilation, synthesis, timing
from fastdfkd_jax.benchmark import configs, profile, records, report, runs
from fastdfkd_jax.benchmark.configs import validate
from fastdfkd_jax.benchmark.timers import SynthesisTimer, make_setup, time_round_robin

CACHE_DIR = "xla_cache"


def _row(method, config, summary, timer, scale, note) -> dict:
    """One table row from a method's run summary and its timing pass."""
    stats = timing.summarize(timer.seconds, scale)
    extrapolated = note is not None
    calls = configs.calls_per_epoch(config)
    if extrapolated:
        total = stats["median_s"] * synthesis.calls_in_run(config)
    else:
        total = summary["synthesis_seconds"]
    return dict(
        method=method,
        label=report.method_label(method),
        synthesis_method=config.synthesis.method,
        g_steps=synthesis.inner_steps(config.synthesis),
        meta_gradient=summary["meta_gradient"],
        student_accuracy=summary["student_test_accuracy"],
        student_best_accuracy=summary.get("student_best_test_accuracy"),
        seeds=summary.get("seeds"),
        student_accuracy_min=summary.get("student_test_accuracy_min"),
        student_accuracy_max=summary.get("student_test_accuracy_max"),
        student_best_accuracy_min=summary.get("student_best_test_accuracy_min"),
        student_best_accuracy_max=summary.get("student_best_test_accuracy_max"),
        teacher_accuracy=summary["teacher_test_accuracy"],
        batches=config.epochs,
        calls_per_epoch=calls,
        synthesis_seconds=total,
        run_synthesis_seconds=summary["synthesis_seconds"],
        run_synthesis_calls=summary["synthesis_calls"],
        run_total_seconds=summary["total_seconds"],
        seconds_per_batch=stats["median_s"],
        seconds_per_batch_min=stats["min_s"],
        seconds_per_batch_max=stats["max_s"],
        timing_calls=stats["n"],
        timing_scale=scale,
        compile_seconds=summary["synthesis_compile_seconds"] or timer.compile_seconds,
        timing_compile_seconds=timer.compile_seconds,
        extrapolated=extrapolated,
        accuracy_from=note or "the full run",
    )


def _timers(bench, method_configs, teacher_cache) -> tuple[dict, dict]:
    """A compiled `SynthesisTimer` per method and its per-batch scale (DeepInversion: chunks)."""
    timers, scales = {}, {}
    for method, config in method_configs.items():
        timed_config, scale = config, 1.0
        if configs.is_chunked(config):
            steps, scale = configs.chunked_per_batch_scale(config, bench.timing_chunks)
            timed_config = configs.copy(config)
            synthesis.set_inner_steps(timed_config.synthesis, steps)
        timers[method] = SynthesisTimer(make_setup(timed_config, teacher_cache))
        scales[method] = scale
        logging.info("Timing %s: compiled in %.1f s", method, timers[method].compile_seconds)
    return timers, scales


def _described(bench, base, method_configs, teacher_dir, rows) -> dict:
    """The result dict around the rows: the run's setting and how it was timed."""
    chunked = any(configs.is_chunked(c) for c in method_configs.values())
    return dict(
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
        device=report.device_description(),
        timing=dict(
            repeats=bench.timing_repeats,
            method=(
                "jitted, compiled once (compile seconds: the run's compilation of its synthesis "
                "call), one warm-up call, then medians of repeated calls interleaved across "
                "methods, each ended by block_until_ready()"
            ),
            chunked=(
                f"median of a call of {bench.timing_chunks} host-driven chunk(s) of chunk_steps "
                "steps, scaled to g_steps"
                if chunked
                else None
            ),
        ),
        rows=rows,
        target=report.target_check(rows),
        targets=report.targets(rows),
    )


def run_benchmark(bench: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the benchmark that `bench` describes; writes and returns `acceleration.json`'s dict."""
    start = time.perf_counter()
    validate(bench)
    os.makedirs(workdir, exist_ok=True)
    if bench.compilation_cache:
        compilation.enable_persistent_cache(os.path.join(workdir, CACHE_DIR))
    teacher_dir = os.path.abspath(runs.ensure_teacher(bench, workdir))
    bench = configs.copy(bench)
    bench.results_dir = configs.results_dir(bench)
    method_configs = {}
    for method in bench.methods:
        config = configs.copy(configs.resolved(configs.method_config(bench, method)))
        config.teacher.checkpoint = teacher_dir
        config.progress_bar = bench.progress_bar
        config.compilation_cache = bench.compilation_cache  # the benchmark's cache, or none
        method_configs[method] = config

    # 1. The runs (accuracy and the run's own synthesis time), one per seed.
    summaries, notes = {}, {}
    digest = None if bench.timing_only else runs.teacher_digest(teacher_dir)
    for method, config in method_configs.items():
        run_config = config
        if method in bench.short_methods:
            run_config = configs.shorter_config(config, bench.short_epochs, bench.short_steps)
            notes[method] = configs.describe_shorter_run(config, run_config)
        if bench.timing_only:
            notes[method] = "not run (timing_only): synthesis time extrapolated, no accuracy"
            continue
        per_seed = []
        for seed in configs.seeds_of(bench, method):
            seeded = configs.copy(run_config)
            seeded.seed = seed
            logging.info(
                "Run %s, seed %d%s", method, seed, f" ({notes[method]})" if method in notes else ""
            )
            record_dir = (
                runs.run_dir_of(bench.results_dir, method, seed) if bench.results_dir else ""
            )
            per_seed.append(
                runs.run_method(seeded, runs.run_dir_of(workdir, method, seed), digest, record_dir)
            )
        summaries[method] = runs.aggregate(per_seed)
    if bench.runs_only:
        logging.info("runs_only: every run finished; no timing pass.")
        return {"runs": summaries}

    # 2. The timing pass: compile once each, warm up, then interleaved repeats.
    teacher_cache: dict = {}
    timers, scales = _timers(bench, method_configs, teacher_cache)
    time_round_robin(timers, bench.timing_repeats)
    rows = []
    for method, config in method_configs.items():
        summary = summaries.get(method) or runs.timing_only_summary(
            timers[method].setup.parts.synthesizer.meta_gradient_label
        )
        rows.append(
            _row(method, config, summary, timers[method], scales[method], notes.get(method))
        )
    report.speedups(rows)
    del timers

    base = method_configs[bench.methods[0]]
    result = _described(bench, base, method_configs, teacher_dir, rows)
    report.write_outputs(result, workdir)  # the main table first: the rest takes a while

    # 3. Exact against first-order meta-gradient, and the profile.
    fast_base = next((c for c in method_configs.values() if c.synthesis.method == "fast"), None)
    if bench.cost_g_steps and fast_base is not None:
        result["meta_gradient_cost"] = profile.measure_cost(bench, fast_base, teacher_cache)
        report.write_outputs(result, workdir)
    if bench.profile_method in method_configs:
        result["profile"] = profile.profile_run(
            bench,
            method_configs[bench.profile_method],
            summaries.get(bench.profile_method, {}),
            teacher_cache,
        )
    result["benchmark_seconds"] = time.perf_counter() - start
    report.write_outputs(result, workdir)
    if bench.results_dir:  # the timing pass's medians kept beside the runs' records
        records.write_timing(bench.results_dir, result)
    return result


__all__ = ["configs", "profile", "report", "run_benchmark", "runs", "validate"]
