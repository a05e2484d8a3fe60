"""Compiling steps: one ahead-of-time compile for every jitted step, and what XLA says about it.

Every step of the project (teacher step, student steps, synthesis call, DeepInversion chunks,
evaluation, state initialization) is compiled by `aot_compile` or `compile_jitted`, so settings
that apply around compilation live here:

- the precision policy (`fastdfkd_jax.precision`): `precision_scope(name)` makes JAX lower float32
  matmuls and convolutions at the policy's precision (`jax.default_matmul_precision`, part of the
  trace context, so an executable never mixes policies); the jobs enter it around all their
  compilation, and `aot_compile(..., precision=name)` enters it itself;
- JAX's persistent compilation cache (`use_persistent_cache`): on by default for every job, so a
  second run of the same config loads its executables instead of compiling them;
- XLA's options per backend (`compiler_options`): on CPU only dot products go to XLA's YNNPACK
  library (`CPU_COMPILER_OPTIONS`, measured in docs/accelerators.md).

`compile_seconds_in` sums the compilation JAX reports inside a block (for work compiled on first
call rather than by `aot_compile`, such as a run's state initialization).

`flops` and `memory_bytes` read XLA's cost and memory analyses of a compiled step, `program_flops`
the cost analysis of a step's lowered program (the same on every backend).
"""

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh

from fastdfkd_jax import precision as precision_lib
from fastdfkd_jax import sharding

# Where `use_persistent_cache('')` puts the cache when no directory is set: $FASTDFKD_CACHE_DIR,
# else the user's cache directory ($XDG_CACHE_HOME, else ~/.cache)/fastdfkd_jax; then CACHE_SUBDIR.
CACHE_ENV = "FASTDFKD_CACHE_DIR"
CACHE_SUBDIR = "xla"


@contextlib.contextmanager
def precision_scope(name: str | None) -> Iterator[None]:
    """Lowering inside the block uses policy `name`'s matmul precision (None: leave it as is)."""
    if name is None:
        yield
        return
    with jax.default_matmul_precision(precision_lib.get(name).matmul_precision):
        yield


# XLA:CPU hands dot products, convolutions, element-wise and reduce fusions to its YNNPACK library
# by default. On this project's CPU steps the library's convolutions and element-wise fusions are
# slower than XLA's own emitters (a CIFAR-10 KD step 2.39 s -> 1.70 s, a Fast-5 call 31.8 s ->
# 21.4 s; docs/accelerators.md), so only dot products go to it. The option is experimental in
# XLA: a jaxlib that does not know it compiles without it (`compile_jitted`).
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def compiler_options(platform: str) -> dict[str, str] | None:
    """XLA's compile options for `platform` ('cpu', 'gpu', 'tpu'); None: XLA's defaults."""
    return dict(CPU_COMPILER_OPTIONS) if platform == "cpu" else None


def compile_jitted(jitted: Any, *args: Any, precision: str | None = None) -> jax.stages.Compiled:
    """`jitted.lower(*args).compile()` under policy `precision` (None: the enclosing scope's),
    with `compiler_options` of the default backend.
    """
    options = compiler_options(jax.default_backend())
    with precision_scope(precision):
        lowered = jitted.lower(*args)
        if options is None:
            return lowered.compile()
        try:
            return lowered.compile(compiler_options=options)
        except jax.errors.JaxRuntimeError as error:
            if not any(name in str(error) for name in options):
                raise
            # An XLA without these (experimental) options: its defaults, as every other backend.
            return lowered.compile()


def aot_compile(
    fn: Callable,
    *args: Any,
    mesh: Mesh,
    out_shardings: Any,
    in_shardings: Any = None,
    donate_argnums: int | tuple[int, ...] = 0,
    precision: str | None = None,
) -> tuple[jax.stages.Compiled, float]:
    """AOT-compiles `fn` for `args` on `mesh`; returns `(compiled, seconds)`.

    Ahead-of-time compilation traces once per run by construction: a later call with other shapes
    or dtypes raises instead of silently recompiling. Inputs are placed by `in_shardings`, by
    default by `sharding.STATE_RULES` (the pool sharded along `data`, the rest replicated); outputs
    as `out_shardings` says. `precision`: a policy of `precision.POLICIES`; None lowers under the
    enclosing `precision_scope` (the jobs enter one from `config.precision`).
    """
    if in_shardings is None:
        in_shardings = sharding.state_shardings(args, mesh)
    start = time.perf_counter()
    jitted = jax.jit(
        fn,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        donate_argnums=donate_argnums,
    )
    compiled = compile_jitted(jitted, *args, precision=precision)
    return compiled, time.perf_counter() - start


# The durations JAX reports (`jax.monitoring`) for one compilation: tracing, lowering, and the
# backend's compile or its retrieval from the persistent cache.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def compile_seconds_in() -> Iterator[Callable[[], float]]:
    """Yields a function returning the seconds this thread has spent compiling since the block
    began (the sum of JAX's `COMPILE_EVENTS` durations; other threads' compilations not counted).
    """
    thread = threading.get_ident()
    total = [0.0]

    def listener(event: str, seconds: float, **_: Any) -> None:
        if event in COMPILE_EVENTS and threading.get_ident() == thread:
            total[0] += seconds

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield lambda: total[0]
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _cost_flops(cost: Any) -> float:
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", float("nan")))


def flops(compiled: jax.stages.Compiled) -> float:
    """Per-device floating-point operations of one call of a compiled step (XLA's cost model).

    What the backend's program computes itself: operations it hands to a library count as zero
    (on GPUs, convolutions become cuDNN calls), and a loop's body counts once. For the work a step
    asks for on any backend, see `program_flops`.
    """
    return _cost_flops(compiled.cost_analysis())


def program_flops(fn: Callable, *args: Any) -> float:
    """Floating-point operations of one call of `fn(*args)`, from XLA's cost model of the program
    as lowered, before any backend rewrites it: the same count on every backend (on CPU within 1%
    of the compiled step's `flops`). A loop's body counts once, so give `fn` its loops unrolled.
    """
    return _cost_flops(jax.jit(fn).lower(*args).cost_analysis())


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


def default_cache_dir() -> str:
    """The persistent cache's default directory (see `CACHE_ENV`)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        root = os.path.join(user_cache, "fastdfkd_jax")
    return os.path.join(root, CACHE_SUBDIR)


def enable_persistent_cache(path: str) -> str:
    """JAX's persistent compilation cache in `path`, for every compile however short.

    Takes effect even when this process has compiled before (JAX decides whether to use a cache
    at its first compilation; the decision is reset here). Returns the absolute path.
    """
    path = os.path.abspath(path)
    # The thresholds are set even when `path` is already the cache (set by the user, or by
    # `spline`, which keeps JAX's defaults): with JAX's 1 s minimum, whether a short compile is
    # cached depended on the machine's load.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    return path


def use_persistent_cache(directory: str = "") -> str:
    """Turns on the persistent cache for a job; returns its directory.

    `directory` '' keeps the cache this process already uses (a benchmark's, a test session's),
    else uses `default_cache_dir()`.
    """
    if not directory:
        directory = jax.config.jax_compilation_cache_dir or default_cache_dir()
    return enable_persistent_cache(directory)
