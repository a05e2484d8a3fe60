"""Settings whose best value depends on the backend: `'auto'`, resolved from the platform.

| key                        | CPU                             | GPU / TPU                         |
|----------------------------|---------------------------------|-----------------------------------|
| `synthesis.<m>.unroll`     | true: the inner steps unrolled  | false: one `lax.scan`             |
| `synthesis.<m>.chunk_steps`| largest divisor of steps <= 10  | 0: one compiled scan of all steps |
| `kd.steps_per_call`        | 1                               | largest divisor <= 10 (*)         |

`<m>`: the blocks of the run's method that have the key (`unroll`: `fast`, `generative`;
`chunk_steps`: `deepinversion`, `cmi`). (*) of the student steps after each synthesis call
(`kd.steps`, or a generative method's `synthesis.generative.kd_steps_per_round`).

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
# The backend-dependent keys of a method's config block.
UNROLL, CHUNK_STEPS = "unroll", "chunk_steps"
# The names of every backend-dependent key: the method blocks' and the student's `kd` block's.
KD_STEPS_PER_CALL = "steps_per_call"
KEYS = (UNROLL, CHUNK_STEPS, KD_STEPS_PER_CALL)
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
    `synthesis.generative.kd_steps_per_round` (several calls per epoch).
    """
    from fastdfkd_jax import synthesis  # here, not above: the synthesis package imports this module

    return synthesis.kd_steps_per_round(config.synthesis) or config.kd.steps


def method_keys(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    """(block, key) of each backend-dependent key in the blocks of the run's synthesis method."""
    from fastdfkd_jax import synthesis  # here, not above: the synthesis package imports this module

    s = config.synthesis
    return [
        (block, key)
        for block in synthesis.method_blocks(s.method)
        for key in (UNROLL, CHUNK_STEPS)
        if key in s[block]
    ]


def parse_method_key(config: ml_collections.ConfigDict, block: str, key: str) -> Any:
    """The value of `synthesis.<block>.<key>` as `parse_bool` or `parse_count` reads it."""
    value, name = config.synthesis[block][key], f"synthesis.{block}.{key}"
    return parse_bool(value, name) if key == UNROLL else parse_count(value, name, 0)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the backend-dependent keys of a distillation config (their forms, divisibility)."""
    for block, key in method_keys(config):
        parse_method_key(config, block, key)
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
    from fastdfkd_jax import synthesis  # here, not above: the synthesis package imports this module

    validate(config)
    on_cpu = platform == CPU
    out = {}
    for block, key in method_keys(config):
        value = parse_method_key(config, block, key)
        if value is None and key == UNROLL:
            value = on_cpu
        elif value is None:  # chunk_steps
            steps = synthesis.inner_steps(config.synthesis)
            value = largest_divisor_at_most(steps, CPU_CHUNK_STEPS) if on_cpu else 0
        out[f"synthesis.{block}.{key}"] = value
    per_call = parse_count(config.kd.steps_per_call, "kd.steps_per_call", 1)
    if per_call is None:
        per_call = (
            1
            if on_cpu
            else largest_divisor_at_most(kd_steps_per_round(config), ACCELERATOR_KD_STEPS_PER_CALL)
        )
    return {**out, f"kd.{KD_STEPS_PER_CALL}": per_call}


def resolve(config: ml_collections.ConfigDict, platform: str) -> ml_collections.ConfigDict:
    """A locked copy of `config` with every 'auto' key replaced by its value on `platform`."""
    values = choices(config, platform)
    resolved = ml_collections.ConfigDict(config.to_dict())
    with resolved.ignore_type():
        for key, value in values.items():
            *path, name = key.split(".")
            holder = resolved
            for part in path:
                holder = holder[part]
            holder[name] = value
    resolved.lock()
    return resolved
