"""Settings whose best value depends on the backend: `'auto'`, resolved from the platform.

| key                     | CPU                               | GPU / TPU                          |
|-------------------------|-----------------------------------|------------------------------------|
| `synthesis.unroll`      | true: the inner steps unrolled    | false: one `lax.scan`              |
| `synthesis.chunk_steps` | largest divisor of g_steps <= 10  | 0: one compiled scan of all steps  |
| `kd.steps_per_call`     | 1                                 | largest divisor <= 10 (*)          |

(*) of the student steps after each synthesis call (`kd.steps`, or a generative method's
`synthesis.kd_steps_per_round`).

Why: XLA:CPU runs a convolution inside a while loop (what `lax.scan` lowers to) about 8x slower
than the same steps unrolled (a Fast-5 call at batch 4: 18.5 s scanned, 0.55 s unrolled), so on
CPU steps are unrolled, DeepInversion's 2000 steps run as host-driven unrolled chunks, and the
student takes one KD step per call (unrolling KD steps multiplies their compile time and saves only
the dispatch of a call, small next to a step on CPU: docs/accelerators.md). On an H100 scanned and
unrolled synthesis run within 10% of each other while the scan compiles in about half the time
(18 s against 34 s for Fast-5 at CIFAR shapes), and several KD steps per call (a scan with the pool
sampling inside) save a host round trip per step.

Each key takes `'auto'` (the default) or an explicit value: `unroll` 'true' | 'false',
`chunk_steps` and `steps_per_call` a non-negative / positive integer (as text, since the config
key is a string; the resolved configs hold bools and ints). `resolve(config, platform)` returns
a copy of a distillation config with the concrete values; the trainer logs them and records them
in summary.json (`backend_choices`).
"""

from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from fastdfkd_jax import checks

AUTO = "auto"
# DeepInversion on CPU: host-driven chunks of at most this many unrolled steps (compile time grows
# with the chunk; 10 steps of a chunk cost about one dispatch each).
CPU_CHUNK_STEPS = 10
# KD steps per compiled call on accelerators: a scan of at most this many steps.
ACCELERATOR_KD_STEPS_PER_CALL = 10
CPU = "cpu"


def parse_bool(value: Any, key: str) -> bool | None:
    """`value` of a bool-or-'auto' key as a bool, or None for 'auto'."""
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() == AUTO:
        return None
    flag = checks.bool_of_text(str(value))
    if flag is None:
        raise ValueError(f"{key}={value!r} must be 'auto', 'true' or 'false'.")
    return flag


def parse_count(value: Any, key: str, minimum: int) -> int | None:
    """`value` of an int-or-'auto' key as an int >= `minimum`, or None for 'auto'."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text == AUTO:
            return None
        try:
            number = int(text)
        except ValueError:
            raise ValueError(
                f"{key}={value!r} must be 'auto' or an integer >= {minimum}."
            ) from None
    if number < minimum:
        raise ValueError(f"{key}={value!r} must be 'auto' or an integer >= {minimum}.")
    return number


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of `n` (>= 1) that is at most `limit`."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def kd_steps_per_round(config: ml_collections.ConfigDict) -> int:
    """Student steps after each synthesis call: `kd.steps`, or a generative method's
    `synthesis.kd_steps_per_round` (several calls per epoch).
    """
    return config.synthesis.get("kd_steps_per_round", 0) or config.kd.steps


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the backend-dependent keys of a distillation config (their forms, divisibility)."""
    s = config.synthesis
    parse_bool(s.unroll, "synthesis.unroll")
    parse_count(s.chunk_steps, "synthesis.chunk_steps", 0)
    per_call = parse_count(config.kd.steps_per_call, "kd.steps_per_call", 1)
    per_round = kd_steps_per_round(config)
    if per_call is not None and per_round % per_call:
        raise ValueError(
            f"kd.steps_per_call={per_call} must divide the student steps per synthesis call "
            f"({per_round})."
        )


def platform_of(mesh: Mesh | None = None) -> str:
    """The platform ('cpu', 'gpu', 'tpu') of `mesh`'s devices, else of JAX's default backend."""
    if mesh is None:
        return jax.default_backend()
    return mesh.devices.flat[0].platform


def choices(config: ml_collections.ConfigDict, platform: str) -> dict[str, Any]:
    """The concrete value of every backend-dependent key of `config` on `platform`."""
    validate(config)
    s = config.synthesis
    on_cpu = platform == CPU
    unroll = parse_bool(s.unroll, "synthesis.unroll")
    chunk = parse_count(s.chunk_steps, "synthesis.chunk_steps", 0)
    per_call = parse_count(config.kd.steps_per_call, "kd.steps_per_call", 1)
    if unroll is None:
        unroll = on_cpu
    if chunk is None:
        chunk = largest_divisor_at_most(s.g_steps, CPU_CHUNK_STEPS) if on_cpu else 0
    if per_call is None:
        per_call = (
            1
            if on_cpu
            else largest_divisor_at_most(kd_steps_per_round(config), ACCELERATOR_KD_STEPS_PER_CALL)
        )
    return {
        "synthesis.unroll": unroll,
        "synthesis.chunk_steps": chunk,
        "kd.steps_per_call": per_call,
    }


def resolve(config: ml_collections.ConfigDict, platform: str) -> ml_collections.ConfigDict:
    """A locked copy of `config` with every 'auto' key replaced by its value on `platform`."""
    values = choices(config, platform)
    resolved = ml_collections.ConfigDict(config.to_dict())
    with resolved.ignore_type():
        for key, value in values.items():
            block, name = key.split(".")
            resolved[block][name] = value
    resolved.lock()
    return resolved
