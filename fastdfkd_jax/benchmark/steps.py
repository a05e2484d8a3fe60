"""Compiled step timings at a distillation config's shapes, with XLA's FLOP count and peak fraction.

`time_steps(spec, policy=...)` builds the parts of a distillation config (randomly initialized
teacher: speed does not depend on the weights), compiles under the precision policy and times, warm
and with compilation apart, the FastDFKD synthesis call (`synthesis`), one student step (`kd_step`,
on a full pool) and one DeepInversion step (`deepinversion_step`: loss, gradient, Adam update and
clip of the pixels). Each row gives the median of `repeats` calls (each ended by
`block_until_ready()`, after one warm-up call), XLA's FLOP count of one call
(`compilation.program_flops` of the step with its loops unrolled: the compiled step's own count
misses what a GPU hands to cuDNN and counts a `lax.scan` body once), the achieved FLOP/s and, for a
device of `PEAK_TFLOPS`, that as a fraction of the device's dense peak for the policy's arithmetic.
XLA counts every floating-point operation (elementwise ones too), so the fraction slightly
overstates the matmul units' use.
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from fastdfkd_jax import (
    compilation,
    components,
    config_args,
    data,
    distill,
    models,
    precision,
    timing,
)
from fastdfkd_jax.synthesis import base as synthesis_base

# Dense (no sparsity) peak TFLOP/s per policy, by a substring of `device.device_kind`; the first
# match wins. Sources: the NVIDIA H100 Tensor Core GPU datasheet (SXM5: FP32 67, TF32 494.7,
# BF16 989.4; PCIe: 51, 378, 756), the NVIDIA H200 datasheet (SXM: the H100 SXM5's), the NVIDIA
# A100 datasheet (19.5, 156, 312); the datasheets' tensor figures with sparsity are twice these.
PEAK_TFLOPS = (
    ("H100 PCIe", {"highest": 51.0, "tensorfloat32": 378.0, "bfloat16": 756.0}),
    ("H100", {"highest": 67.0, "tensorfloat32": 494.7, "bfloat16": 989.4}),
    ("H200", {"highest": 67.0, "tensorfloat32": 494.7, "bfloat16": 989.4}),
    ("A100", {"highest": 19.5, "tensorfloat32": 156.0, "bfloat16": 312.0}),
)
STEPS = ("synthesis", "kd_step", "deepinversion_step")
# The KD step samples a pool holding this many synthesis batches.
POOL_BATCHES = 4


def peak_flops(device_kind: str, policy: str) -> float | None:
    """The device's dense peak FLOP/s for `policy`'s arithmetic, or None when not in the table."""
    for key, peaks in PEAK_TFLOPS:
        if key in device_kind:
            return peaks[policy] * 1e12
    return None


def shrink(config: ml_collections.ConfigDict, arch: str, batch: int) -> None:
    """Tiny models and batches at the config's image shape (the tests' quick form)."""
    config.teacher.arch = config.student.arch = arch
    config.synthesis.batch_size = config.kd.batch_size = batch
    config.synthesis.generator.nz, config.synthesis.generator.ngf = 8, 4


def random_teacher(arch: str, info: data.DatasetInfo, dtype: jnp.dtype = jnp.float32) -> tuple:
    """`(module, variables)` of a randomly initialized teacher `arch` at `info`'s image shape and
    classes: what timings need (speed does not depend on the weights' values).
    """
    module = models.create_model(arch, num_classes=info.num_classes, dtype=dtype)
    variables = module.init(jax.random.PRNGKey(1), jnp.zeros((1, *info.image_shape)), train=False)
    return module, variables


def build(
    spec: str,
    policy: str,
    small: bool,
    batch_size: int = 0,
    small_arch: str = "digits_cnn_tiny",
    small_batch: int = 4,
) -> tuple[components.Components, object]:
    """The parts and a state (pool full of noise) of the config `spec` under `policy`."""
    config = config_args.load_config(spec)
    config.precision = policy
    config.mesh.data = 1
    if batch_size:
        config.synthesis.batch_size = config.kd.batch_size = batch_size
    if small:
        shrink(config, small_arch, small_batch)
    config.pool.capacity = config.synthesis.batch_size * POOL_BATCHES
    info = data.get_info(config.dataset.name)
    teacher = random_teacher(config.teacher.arch, info, precision.compute_dtype(policy))
    parts = components.build(config, teacher=teacher)
    pool = jax.random.uniform(jax.random.PRNGKey(2), (config.pool.capacity, *info.image_shape))
    state = components.init_state(parts, components.run_keys(config.seed), pool_images=pool)
    return parts, state


def _row(name, flops, compile_s, call, repeats, batch, device_kind, policy) -> dict:
    """One timed step: `flops` per call (`compilation.program_flops`), `call()` timed."""
    stats = timing.time_calls(call, repeats)
    achieved = flops / stats["median_s"]
    peak = peak_flops(device_kind, policy)
    return dict(
        step=name,
        policy=policy,
        batch=batch,
        compile_s=compile_s,
        gflop=flops / 1e9,
        tflops_achieved=achieved / 1e12,
        peak_fraction=achieved / peak if peak else None,
        **stats,
    )


def time_steps(
    fast_spec: str,
    deepinv_spec: str,
    *,
    policy: str,
    repeats: int,
    small: bool = False,
    batch_size: int = 0,
    steps: tuple[str, ...] = STEPS,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Rows of `STEPS` (those in `steps`) for the configs `fast_spec` and `deepinv_spec`;
    `on_row` is called with each row as soon as it is measured.
    """
    device_kind = jax.devices()[0].device_kind
    rows = _Rows(on_row)
    parts, state = build(fast_spec, policy, small, batch_size)
    adv = components.adv_array(parts.config.synthesis.adv)
    rng = jax.random.PRNGKey(3)
    with compilation.precision_scope(policy):
        if "synthesis" in steps:
            call, seconds = parts.synthesizer.compile_call(
                state, parts.teacher_vars, rng, adv, mesh=parts.mesh, donate=False
            )
            # The inner steps unrolled, so that each counts (a scan's body counts once).
            unrolled = dataclasses.replace(parts.synthesizer, unroll=True)
            flops = compilation.program_flops(
                functools.partial(synthesis_base.synthesis_call, synthesizer=unrolled),
                state,
                parts.teacher_vars,
                rng,
                adv,
            )
            rows.append(
                _row(
                    "synthesis",
                    flops,
                    seconds,
                    lambda: call(state, parts.teacher_vars, rng, adv),
                    repeats,
                    parts.config.synthesis.batch_size,
                    device_kind,
                    policy,
                )
            )
        if "kd_step" in steps:
            kd, seconds = distill.compile_kd_step(
                state,
                parts.teacher_vars,
                rng,
                mesh=parts.mesh,
                donate=False,
                **components.kd_step_options(parts),
            )
            flops = compilation.program_flops(
                distill.bound_kd_step(parts.mesh, **components.kd_step_options(parts)),
                state,
                parts.teacher_vars,
                rng,
            )
            rows.append(
                _row(
                    "kd_step",
                    flops,
                    seconds,
                    lambda: kd(state, parts.teacher_vars, rng),
                    repeats,
                    parts.config.kd.batch_size,
                    device_kind,
                    policy,
                )
            )
    if "deepinversion_step" in steps:
        rows.append(deepinversion_step(deepinv_spec, policy, small, batch_size, repeats))
    return list(rows)


class _Rows(list):
    """A list that also hands each appended row to a callback."""

    def __init__(self, on_row: Callable[[dict], None] | None):
        super().__init__()
        self.on_row = on_row

    def append(self, row: dict) -> None:
        super().append(row)
        if self.on_row is not None:
            self.on_row(row)


def deepinversion_step(spec, policy, small, batch_size, repeats) -> dict:
    """One DeepInversion step (`DeepInversionSynthesizer.advance` of one step), timed."""
    parts, state = build(spec, policy, small, batch_size)
    synth = parts.synthesizer
    tv, sv = parts.teacher_vars, state.student.variables
    adv = components.adv_array(parts.config.synthesis.adv)
    carry = jax.jit(synth.begin)(state.synthesizer, jax.random.PRNGKey(4), tv)
    advance = functools.partial(synth.advance, num_steps=1, unroll=True)
    start = time.perf_counter()
    with compilation.precision_scope(policy):
        compiled = compilation.compile_jitted(
            jax.jit(advance), carry, state.bn_memory, tv, sv, adv, jnp.int32(0)
        )
        seconds = time.perf_counter() - start
        flops = compilation.program_flops(
            advance, carry, state.bn_memory, tv, sv, adv, jnp.int32(0)
        )
    return _row(
        "deepinversion_step",
        flops,
        seconds,
        lambda: compiled(carry, state.bn_memory, tv, sv, adv, jnp.int32(0)),
        repeats,
        parts.config.synthesis.batch_size,
        jax.devices()[0].device_kind,
        policy,
    )
