"""Compiling steps: one ahead-of-time compile for every jitted step, and what XLA says about it.

Every step of the project (teacher step, student step, synthesis call, DeepInversion chunks) is
compiled by `aot_compile`, so settings that apply around compilation live here. `flops` and
`memory_bytes` read XLA's cost and memory analyses of a compiled step; `enable_persistent_cache`
turns on JAX's on-disk compilation cache.
"""

import os
import time
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh

from fastdfkd_jax import sharding


def aot_compile(
    fn: Callable,
    *args: Any,
    mesh: Mesh,
    out_shardings: Any,
    in_shardings: Any = None,
    donate_argnums: int | tuple[int, ...] = 0,
) -> tuple[jax.stages.Compiled, float]:
    """AOT-compiles `fn` for `args` on `mesh`; returns `(compiled, seconds)`.

    Ahead-of-time compilation traces once per run by construction: a later call with other shapes
    or dtypes raises instead of silently recompiling. Inputs are placed by `in_shardings`, by
    default by `sharding.STATE_RULES` (the pool sharded along `data`, the rest replicated); outputs
    as `out_shardings` says.
    """
    if in_shardings is None:
        in_shardings = sharding.state_shardings(args, mesh)
    start = time.perf_counter()
    compiled = (
        jax.jit(
            fn,
            in_shardings=in_shardings,
            out_shardings=out_shardings,
            donate_argnums=donate_argnums,
        )
        .lower(*args)
        .compile()
    )
    return compiled, time.perf_counter() - start


def flops(compiled: jax.stages.Compiled) -> float:
    """Per-device floating-point operations of one call of a compiled step (XLA's cost model)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


def memory_bytes(compiled: jax.stages.Compiled) -> dict[str, int]:
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


def enable_persistent_cache(path: str) -> None:
    """JAX's persistent compilation cache in `path`, for every compile however short."""
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
