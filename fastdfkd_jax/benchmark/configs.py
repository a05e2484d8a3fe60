"""The benchmark's distillation configs: each method's, the shorter DeepInversion run, reuse.

Each method's config is `<bench.dfkd_config>:<bench.dfkd_arg with the method>` (a config file
loaded by path) with `bench.run` applied, so every method has the same teacher, student and KD
schedule.
"""

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from fastdfkd_jax import backend, config_args, methods, ranges, synthesis

# Keys that do not change what a run computes: a finished run that differs only in them is reused.
DISPLAY_ONLY_KEYS = ("progress_bar",)


def validate(bench: ml_collections.ConfigDict) -> None:
    """Checks a benchmark config (and that every method's config builds) before any compute."""
    ranges.check(bench, ranges.BENCHMARK)
    if not bench.methods:
        raise ValueError("bench methods is empty.")
    if bench.timing_repeats < 1:
        raise ValueError(f"timing_repeats must be >= 1, got {bench.timing_repeats}.")
    if not bench.seeds or len(set(bench.seeds)) != len(bench.seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {bench.seeds}.")
    for method in bench.methods:
        ranges.check(method_config(bench, method), ranges.DFKD)


def seeds_of(bench: ml_collections.ConfigDict, method: str) -> tuple[int, ...]:
    """The seeds `method` runs with: `seeds`, or its first only for `single_seed_methods`."""
    return tuple(bench.seeds[:1]) if method in bench.single_seed_methods else tuple(bench.seeds)


def results_dir(bench: ml_collections.ConfigDict) -> str:
    """`results_dir` with its `{backend}` (cpu, gpu, tpu: records of one kind of device apart)
    filled in for this process's default backend.
    """
    return bench.results_dir.format(backend=backend.platform_of()) if bench.results_dir else ""


def copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """An unlocked deep copy of `config`."""
    return ml_collections.ConfigDict(config.to_dict())


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any], prefix: str = ""
) -> None:
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
    config = config_args.load_config(f"{bench.dfkd_config}:{bench.dfkd_arg.format(method=method)}")
    apply_overrides(config, bench.run)
    return config


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with its 'auto' keys resolved for this process's default backend (the benchmark
    times and runs every method on it).
    """
    return backend.resolve(config, backend.platform_of())


def chunk_steps(config: ml_collections.ConfigDict) -> int:
    """A chunked method's steps per host-driven chunk in `config` (0: one scan, or a method with no
    chunks), 'auto' resolved.
    """
    choices = backend.choices(config, backend.platform_of())
    blocks = synthesis.method_blocks(config.synthesis.method)
    return choices.get(f"synthesis.{blocks[0]}.{backend.CHUNK_STEPS}", 0) if blocks else 0


def with_fast_steps(
    config: ml_collections.ConfigDict, g_steps: int, meta_gradient: str, remat: bool
) -> ml_collections.ConfigDict:
    """A copy of a Fast-k config as Fast-`g_steps` with the given meta-gradient and remat."""
    config = methods.fast(copy(config), g_steps)
    config.synthesis.fast.meta_gradient = meta_gradient
    config.synthesis.fast.remat = remat
    return config


def shorter_config(
    config: ml_collections.ConfigDict, epochs: int, steps: int = 0
) -> ml_collections.ConfigDict:
    """`config` on `epochs` batches (of `steps` steps; 0: its own inner steps), with the same
    student training budget.

    Warmup shrinks in proportion to the epochs (at least 0, below `epochs`); `kd.steps` grows so
    that the student takes at least as many KD steps in total as in the full run, with the same
    cosine schedule length in steps.
    """
    if epochs < 1 or epochs > config.epochs:
        raise ValueError(f"short_epochs must be in [1, epochs={config.epochs}], got {epochs}.")
    steps = steps or synthesis.inner_steps(config.synthesis)
    chunk = chunk_steps(config)
    if steps < 1 or (chunk and steps % chunk):
        raise ValueError(f"short_steps={steps} must be >= 1 and a multiple of chunk_steps={chunk}.")
    short = copy(config)
    full_kd_epochs = config.epochs - config.warmup
    warmup = min(epochs - 1, int(round(config.warmup * epochs / config.epochs)))
    short.epochs, short.warmup = epochs, warmup
    short.kd.steps = math.ceil(config.kd.steps * full_kd_epochs / (epochs - warmup))
    synthesis.set_inner_steps(short.synthesis, steps)
    short.checkpoint.every_epochs = 1
    short.eval_every_epochs = 1
    return short


def describe_shorter_run(full: ml_collections.ConfigDict, short: ml_collections.ConfigDict) -> str:
    """One sentence saying exactly what the shorter run was."""
    return (
        f"{full.method} with {synthesis.inner_steps(short.synthesis)} steps per batch on "
        f"{short.epochs} batches (instead of {synthesis.inner_steps(full.synthesis)} steps on "
        f"{full.epochs}), warmup {short.warmup}, "
        f"{short.kd.steps} KD steps per epoch ({(short.epochs - short.warmup) * short.kd.steps} "
        f"in all, the full schedule has {(full.epochs - full.warmup) * full.kd.steps})"
    )


def is_chunked(config: ml_collections.ConfigDict) -> bool:
    """Whether the method's steps run as host-driven chunks (DeepInversion, CMI)."""
    return synthesis.is_chunked(config.synthesis)


def chunked_per_batch_scale(config: ml_collections.ConfigDict, timing_chunks: int) -> tuple:
    """`(timed steps, scale)`: a timed call of `timed steps` steps times `scale` is one batch."""
    steps = synthesis.inner_steps(config.synthesis)
    chunk = chunk_steps(config) or steps
    timed = min(steps, chunk * timing_chunks)
    return timed, steps / timed


def calls_per_epoch(config: ml_collections.ConfigDict) -> int | float:
    """Synthesis calls per epoch: the run's calls over its epochs (an int for every method whose
    epochs all make the same number of calls: 1, or generative methods' rounds).
    """
    total = synthesis.calls_in_run(config)
    return total // config.epochs if total % config.epochs == 0 else total / config.epochs


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
