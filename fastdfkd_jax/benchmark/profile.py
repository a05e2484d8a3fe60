"""Where the time goes: the exact meta-gradient's cost, a profile of one run's epoch, and the
slowest operations of a compiled step (`op_profile`).
"""

import collections
import glob
import gzip
import json
import math
import os
import re
import statistics
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from fastdfkd_jax import compilation, components, data, distill, timing
from fastdfkd_jax.benchmark.configs import with_fast_steps
from fastdfkd_jax.benchmark.timers import SynthesisTimer, make_setup, time_round_robin
from fastdfkd_jax.evaluation import on_device
from fastdfkd_jax.synthesis import pool as pool_lib

# Variants of the meta-gradient cost table: (label, meta_gradient, remat, unroll, timed). The
# lax.scan variants (unroll False: the accelerator setting) are compiled for their memory only:
# XLA:CPU runs scanned convolutions ~8x slower, so their times would say nothing about a GPU.
COST_VARIANTS = (
    ("first_order", "first_order", False, True, True),
    ("exact", "exact", False, True, True),
    ("exact+remat", "exact", True, True, True),
    ("first_order/scan", "first_order", False, False, False),
    ("exact/scan", "exact", False, False, False),
    ("exact+remat/scan", "exact", True, False, False),
)


def measure_cost(
    bench: ml_collections.ConfigDict, base_config: ml_collections.ConfigDict, teacher_cache: dict
) -> list[dict]:
    """Time and compiled memory of one Fast-k synthesis call per meta-gradient variant.

    Unrolled variants are timed (medians, interleaved); scan variants only compiled, for their
    memory (`median_s` None). Ratios are against first-order with the same unroll setting.
    """
    timers, meta, untimed = {}, {}, {}
    for g_steps in bench.cost_g_steps:
        for label, meta_gradient, remat, unroll, timed in COST_VARIANTS:
            config = with_fast_steps(base_config, g_steps, meta_gradient, remat)
            config.synthesis.fast.unroll = unroll
            timer = SynthesisTimer(make_setup(config, teacher_cache))
            name = f"{label}/g{g_steps}"
            (timers if timed else untimed)[name] = timer
            meta[name] = dict(
                variant=label,
                g_steps=g_steps,
                remat=remat,
                unroll=unroll,
                compile_seconds=timer.compile_seconds,
                **compilation.memory_bytes(timer.compiled),
            )
            logging.info("cost %s: compiled in %.1f s", name, timer.compile_seconds)
    time_round_robin(timers, bench.timing_repeats)
    rows = [dict(meta[name], **timing.summarize(timer.seconds)) for name, timer in timers.items()]
    rows += [dict(meta[name], median_s=None) for name in untimed]
    for row in rows:
        ref = next(
            r
            for r in rows
            if r["g_steps"] == row["g_steps"]
            and r["unroll"] == row["unroll"]
            and r["variant"].split("/")[0] == "first_order"
        )
        row["time_vs_first_order"] = (
            row["median_s"] / ref["median_s"] if row["median_s"] is not None else None
        )
        row["memory_vs_first_order"] = row["peak_bytes"] / ref["peak_bytes"]
        row["temp_vs_first_order"] = row["temp_bytes"] / max(ref["temp_bytes"], 1)
    return rows


def profile_run(
    bench: ml_collections.ConfigDict,
    config: ml_collections.ConfigDict,
    summary: dict,
    teacher_cache: dict,
) -> dict:
    """Where one run's time goes: measured totals of the run and timed pieces of one epoch.

    Pieces (medians of `timing_repeats` calls, each ended by `block_until_ready()`): the inner
    steps alone (`FastSynthesizer.inner_run`, jitted), the whole synthesis call (the rest of it is
    the meta update, BN memory update and pool insert), one KD step, one evaluation of the test
    split, and the device-to-host transfer of an epoch's metrics and images.
    """
    setup = make_setup(config, teacher_cache)
    parts = setup.parts
    # The timers donate the states they are given: keep private copies for the other pieces.
    state = jax.tree.map(jnp.copy, setup.state)
    kd_state = jax.tree.map(jnp.copy, setup.state)
    synth = SynthesisTimer(setup)
    synthesizer = parts.synthesizer
    adv = components.adv_array(config.synthesis.adv)
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
            parts.teacher_vars,
            state.student.variables,
            state.bn_memory,
            adv,
        )

    inner_fn = jax.jit(inner).lower(state.synthesizer.params).compile()
    kd_fn, kd_compile = distill.compile_kd_step(
        kd_state, parts.teacher_vars, rng, mesh=parts.mesh, **components.kd_step_options(parts)
    )
    # One batch in the KD state's pool, so the student samples filled slots.
    kd_state = kd_state.replace(
        pool=pool_lib.add(
            kd_state.pool, jnp.full((synthesizer.batch_size, *parts.info.image_shape), 0.5)
        )
    )
    test = on_device.put_split(
        data.load_split(config.dataset.name, "test", config.dataset.data_dir or None),
        parts.mesh,
        config.eval_batch_size,
    )
    evaluator = on_device.Evaluator(parts.student, parts.info.mean, parts.info.std, parts.mesh)
    pieces = {
        name: [] for name in ("inner_steps", "synthesis_call", "kd_step", "evaluation", "transfer")
    }
    for i in range(bench.timing_repeats + 1):  # round 0 is the warm-up
        step_rng = jax.random.fold_in(rng, i)
        t_inner, _ = timing.timed(inner_fn, state.synthesizer.params)
        t_synth = synth.once()
        t_kd, (kd_state, _) = timing.timed(kd_fn, kd_state, parts.teacher_vars, step_rng)
        t_eval, _ = timing.timed(evaluator, kd_state.student.variables, test)
        _, (synth.state, images, metrics) = timing.timed(
            synth.call, synth.state, parts.teacher_vars, step_rng, adv
        )
        t_transfer, _ = timing.timed(jax.device_get, (metrics, images))
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


def op_profile(
    compiled: Any, call: Callable[[], Any], repeats: int, top: int = 15
) -> list[dict[str, Any]]:
    """Where a compiled step spends its time: its `top` slowest XLA operations.

    Runs `call` (which calls `compiled`) `repeats` times under `jax.profiler.trace` and reads the
    trace's per-operation events (XLA:CPU and GPU executables emit one per operation). Each row:
    the operation's name in the optimized HLO, its milliseconds per call, its share of the
    operations' total, and its HLO instruction (shapes, convolution dimensions) from
    `compiled.as_text()`.
    """
    jax.block_until_ready(call())  # warm
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(repeats):
                jax.block_until_ready(call())
        (path,) = glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    hlo = {}
    for line in compiled.as_text().splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
        if match:
            hlo[match.group(1)] = match.group(2).strip()
    seconds: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("ph") == "X" and event.get("name") in hlo:
            seconds[event["name"]] += event.get("dur", 0) / 1e6
    total = sum(seconds.values()) or 1.0
    rows = sorted(seconds.items(), key=lambda item: -item[1])[:top]
    return [
        dict(op=name, ms_per_call=1e3 * s / repeats, share=s / total, hlo=hlo[name][:240])
        for name, s in rows
    ]
