"""What the distillation trainer needs of a synthesis method, and the pool-based default.

A synthesizer is a frozen dataclass (static configuration) whose state is passed in and out; the
trainer (`fastdfkd_jax.train`) talks to it only through `Synthesizer`:

- `init(rng)`: the method's own state (`DFKDState.synthesizer`): a meta generator, a continuously
  trained generator, a contrastive head and its memory bank, or nothing;
- `init_bn_memory(teacher_vars, image_shape)`: the run's empty BN momentum memory, shaped like
  the teacher's BatchNorm layers (`DFKDState.bn_memory`);
- `synthesize(...)`: one synthesis call (pure, jittable): new state, BN memory, images, metrics;
- `kd_images(state, rng, batch)`: where the student's KD batches come from (pure, jittable): the
  image pool, or fresh samples of a generator;
- `draw_targets(rng)`: the classes the call of key `rng` aims its images at (the function the
  call itself draws them with), or None for a method without per-image targets;
- `adv_weight(epoch)`, `start_epoch(state, epoch, rng)`, `rounds_per_epoch`,
  `calls_per_round(epoch)`: the method's schedule, on the host (when the adversarial term starts,
  resets of generator layers, how many rounds make an epoch, each of `calls_per_round(epoch)`
  synthesis calls followed by its share of `kd.steps` student steps);
- `compile_call(...)`: the compiled synthesis call on the run's mesh (DeepInversion drives its
  steps from the host in chunks; the others are one compiled function);
- `meta_gradient_label`: what the run summary and the benchmark call its meta-gradient.

`PoolSynthesis` implements all but `init` and `synthesize` for methods that put each batch in the
pool and train the student on draws from it (FastDFKD, DeepInversion, CMI); a generative method
overrides `kd_images` to sample its generator instead. `ChunkedSynthesis` compiles a call whose
many steps run as host-driven chunks (DeepInversion, CMI: `begin` / `advance` / `finish`).

`adv_start_epoch` turns the config's `adv_start` into the first epoch with the adversarial term.
"""

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fastdfkd_jax import backend, compilation, models, precision, sharding
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import init_bn_memory

# When the adversarial term switches on (the config's `synthesis.adv_start`; see config_blocks).
ADV_STARTS = ("before_kd", "first_call", "with_kd")


def uniform_targets(key: jax.Array, batch_size: int, num_classes: int) -> jax.Array:
    """Target classes int32 [batch_size] drawn uniformly from 0..num_classes-1 with `key`."""
    return jax.random.randint(key, (batch_size,), 0, num_classes)


def adv_start_epoch(adv_start: str, warmup: int) -> int:
    """The first 0-based epoch with the adversarial term on.

    'first_call': 0 (the original's DeepInversion, CMI and generative methods never gate it);
    'before_kd': warmup - 1, at least 0 (the original FastDFKD's `ep >= warmup` with `ep` counted
    from 1: one call before the first KD step); 'with_kd': warmup.
    """
    if adv_start == "first_call":
        return 0
    if adv_start == "before_kd":
        return max(warmup - 1, 0)
    if adv_start == "with_kd":
        return warmup
    raise ValueError(f"Unknown synthesis.adv_start {adv_start!r}; choose one of {ADV_STARTS}.")


# `(state, teacher_vars, rng, adv_weight) -> (state, images [B, H, W, C], metrics)`.
SynthesisCall = Callable[[Any, dict, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


class Synthesizer(Protocol):
    """The interface between a synthesis method and the trainer (see the module docstring).

    `state` arguments of `kd_images`, `start_epoch`'s result aside, are `DFKDState`s: the
    synthesizer reads `state.synthesizer` (its own state) and `state.pool`.
    """

    batch_size: int
    rounds_per_epoch: int
    # An upper bound of `calls_per_round` (it spaces the calls' random keys apart).
    max_calls_per_round: int

    def calls_per_round(self, epoch: int) -> int: ...

    def init(self, rng: jax.Array) -> Any: ...

    def init_bn_memory(self, teacher_vars: dict, image_shape: Sequence[int]) -> losses.BNMemory: ...

    def synthesize(
        self,
        state: Any,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[Any, losses.BNMemory, jax.Array, dict]: ...

    def kd_images(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array: ...

    def draw_targets(self, rng: jax.Array) -> jax.Array | None: ...

    def adv_weight(self, epoch: int) -> float: ...

    def start_epoch(self, state: Any, epoch: int, rng: jax.Array) -> Any: ...

    def compile_call(
        self,
        state: Any,
        teacher_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
        *,
        mesh: Mesh,
        donate: bool = True,
    ) -> tuple[SynthesisCall, float]: ...

    @property
    def meta_gradient_label(self) -> str: ...


def synthesis_call(
    state: Any,
    teacher_vars: dict,
    rng: jax.Array,
    adv_weight: jax.Array,
    *,
    synthesizer: Synthesizer,
) -> tuple[Any, jax.Array, dict]:
    """One synthesis call and the pool insert: `(state, ...) -> (state, images, metrics)`."""
    synth, bn_memory, images, metrics = synthesizer.synthesize(
        state.synthesizer, state.bn_memory, teacher_vars, state.student.variables, rng, adv_weight
    )
    state = state.replace(
        synthesizer=synth, bn_memory=bn_memory, pool=pool_lib.add(state.pool, images)
    )
    return state, images, metrics


def synthesis_out_shardings(state: Any, mesh: Mesh) -> tuple:
    """A synthesis call's output shardings: state by the rules, images split, metrics whole."""
    return (
        sharding.state_shardings(state, mesh),
        sharding.batch_sharding(mesh),
        sharding.replicated(mesh),
    )


class PoolSynthesis:
    """Defaults for synthesizers that fill the pool (mixed into their dataclasses).

    The dataclass provides `adv` (the adversarial weight) and `adv_start_epoch` (the first epoch
    with the adversarial term on, `adv_start_epoch(...)`).
    """

    adv: float
    adv_start_epoch: int
    rounds_per_epoch: int = 1
    max_calls_per_round = 1  # a class constant, not a field

    def calls_per_round(self, epoch: int) -> int:
        """Synthesis calls before each round's student steps in `epoch`: one."""
        del epoch
        return 1

    def init_bn_memory(self, teacher_vars: dict, image_shape: Sequence[int]) -> losses.BNMemory:
        """The empty BN memory of the teacher of the synthesizer's `objective`."""
        return init_bn_memory(self.objective, teacher_vars, image_shape)

    def kd_images(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        """`batch_size` images drawn uniformly from the pool, float32 [B, H, W, C] in [0, 1]."""
        return pool_lib.sample(state.pool, rng, batch_size)

    def draw_targets(self, rng: jax.Array) -> jax.Array | None:
        """The classes int32 [B] that the synthesis call of key `rng` aims its images at, or None
        for a method without per-image targets (the default: its images' classes are the
        teacher's alone). The call draws them with this function, so the two always agree.
        """
        del rng
        return None

    def adv_weight(self, epoch: int) -> float:
        return self.adv if epoch >= self.adv_start_epoch else 0.0

    def start_epoch(self, state: Any, epoch: int, rng: jax.Array) -> Any:
        del epoch, rng
        return state

    def compile_call(
        self,
        state: Any,
        teacher_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
        *,
        mesh: Mesh,
        donate: bool = True,
    ) -> tuple[SynthesisCall, float]:
        """One compiled function; with `donate` the input state's buffers are reused."""
        return compilation.aot_compile(
            functools.partial(synthesis_call, synthesizer=self),
            state,
            teacher_vars,
            rng,
            adv_weight,
            mesh=mesh,
            out_shardings=synthesis_out_shardings(state, mesh),
            donate_argnums=0 if donate else (),
        )

    @property
    def meta_gradient_label(self) -> str:
        return "none"


class ChunkedSynthesis(PoolSynthesis):
    """A pool method whose call runs many steps, as host-driven chunks on CPU (mixed in).

    The dataclass provides `steps`, `chunk_steps` (0: one compiled function) and the pieces
    `begin(synth_state, rng, teacher_vars) -> carry`, `advance(carry, bn_memory, teacher_vars,
    student_vars, adv_weight, first_step, num_steps, unroll=False) -> carry` and
    `finish(synth_state, carry, bn_memory) -> (synth_state, bn_memory, images, metrics)`;
    `synthesize` is the three in one function (a `lax.scan` over the steps).
    """

    steps: int
    chunk_steps: int

    def synthesize(
        self,
        state: Any,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[Any, losses.BNMemory, jax.Array, dict]:
        """One batch in one function (the steps as one `lax.scan`).

        Returns:
          (state, BN memory, images [B, H, W, C] in [0, 1], metrics). On CPU, where a scan is
          slow, `compile_call` drives `begin`, `advance` (unrolled chunks) and `finish` instead.
        """
        carry = self.begin(state, rng, teacher_vars)
        carry = self.advance(
            carry, bn_memory, teacher_vars, student_vars, adv_weight, 0, self.steps
        )
        return self.finish(state, carry, bn_memory)

    def compile_call(
        self,
        state: Any,
        teacher_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
        *,
        mesh: Mesh,
        donate: bool = True,
    ) -> tuple[SynthesisCall, float]:
        """The synthesis call on `mesh`: one compiled function, or host-driven chunks.

        With `chunk_steps > 0` the steps run as `steps / chunk_steps` calls of one compiled,
        unrolled chunk driven from the host (XLA:CPU runs scans slowly; see synthesis/steps.py),
        between a compiled `begin` and `finish` (pool insert included). Returns
        `(call, compile_seconds)`; `call` has the signature of `synthesis_call`.
        """
        chunk = self.chunk_steps
        if chunk == 0:
            return super().compile_call(
                state, teacher_vars, rng, adv_weight, mesh=mesh, donate=donate
            )
        start = time.perf_counter()
        begin = compilation.compile_jitted(
            jax.jit(self.begin), state.synthesizer, rng, teacher_vars
        )
        # The carry stays where `begin` puts it, chunk after chunk: `advance` and `finish` are
        # compiled for those shardings (left to themselves, on a mesh of several devices they
        # would each choose their own and refuse `begin`'s).
        carry_shardings = begin.output_shardings
        carry = jax.tree.map(
            lambda shape, placement: jax.ShapeDtypeStruct(
                shape.shape, shape.dtype, sharding=placement
            ),
            jax.eval_shape(self.begin, state.synthesizer, rng, teacher_vars),
            carry_shardings,
        )

        def advance_fn(carry, bn_memory, teacher_vars, student_vars, adv, first_step):
            return self.advance(
                carry, bn_memory, teacher_vars, student_vars, adv, first_step, chunk, unroll=True
            )

        advance = compilation.compile_jitted(
            jax.jit(advance_fn, donate_argnums=0, out_shardings=carry_shardings),
            carry,
            state.bn_memory,
            teacher_vars,
            state.student.variables,
            adv_weight,
            jnp.int32(0),
        )

        def finish_fn(state, carry):
            synth, bn_memory, images, metrics = self.finish(
                state.synthesizer, carry, state.bn_memory
            )
            state = state.replace(
                synthesizer=synth, bn_memory=bn_memory, pool=pool_lib.add(state.pool, images)
            )
            return state, images, metrics

        finish = compilation.compile_jitted(
            jax.jit(
                finish_fn,
                out_shardings=synthesis_out_shardings(state, mesh),
                donate_argnums=0 if donate else (),
            ),
            state,
            carry,
        )
        seconds = time.perf_counter() - start

        def call(state, teacher_vars, rng, adv):
            carry = begin(state.synthesizer, rng, teacher_vars)
            for first in range(0, self.steps, chunk):
                carry = advance(
                    carry,
                    state.bn_memory,
                    teacher_vars,
                    state.student.variables,
                    adv,
                    jnp.int32(first),
                )
            return finish(state, carry)

        return call, seconds


def check_chunk_steps(chunk_steps: int, steps: int) -> None:
    """Raises a ValueError unless `chunk_steps` is 0 or a positive divisor of `steps`."""
    if not isinstance(chunk_steps, int):
        raise ValueError(
            f"chunk_steps must be an int, got {chunk_steps!r} (components.build resolves 'auto')."
        )
    if chunk_steps < 0 or (chunk_steps and steps % chunk_steps):
        raise ValueError(
            f"chunk_steps={chunk_steps} must be >= 0 and divide the method's steps={steps}."
        )


def validate_chunk_steps(block: Any, name: str) -> None:
    """Checks a method block's `chunk_steps` against its `steps` ('auto' always fits); `name` is
    the block's dotted config key, for the message.
    """
    chunk = backend.parse_count(block.chunk_steps, f"{name}.chunk_steps", 0)
    if chunk is not None:
        check_chunk_steps(chunk, block.steps)


def from_block(cls: type, block: Any, **given: Any) -> Any:
    """`cls(**given)` with every other field of the dataclass `cls` that the config `block` names
    taken from it (sequences as tuples: a synthesizer is a hashed, static jit argument).

    A method's config block (`synthesis.<block>`) names its keys as its synthesizer's fields, so a
    `build` copies no field by hand; keys that are not fields (a head's width, a choice resolved
    first) are passed in `given` or read by the caller.
    """
    names = {field.name for field in dataclasses.fields(cls)} - set(given)
    taken = {
        key: tuple(value) if isinstance(value, (list, tuple)) else value
        for key, value in block.items()
        if key in names
    }
    return cls(**taken, **given)


def generator_from_config(config: Any, info: Any) -> Any:
    """The generator of a distillation run's `config.synthesis.generator`, sized for `info`'s
    images and computing in the run's precision (`models.create_generator`).
    """
    g = config.synthesis.generator
    return models.create_generator(
        g.arch,
        tuple(info.image_shape),
        nz=g.nz,
        ngf=g.ngf,
        dtype=precision.compute_dtype(config.precision),
    )


def reset_layers(
    params: Any,
    rng: jax.Array,
    layer_names: Sequence[str],
    std: float,
    scale_mean: float = 1.0,
) -> Any:
    """Re-initializes the named generator layers (FastDFKD's `reset_l0`; CMI's `reset_model`).

    Kernels ~ N(0, std), biases 0, BatchNorm scales ~ N(scale_mean, std). `scale_mean` 1.0 is the
    usual BatchNorm start (CMI's reset_model); the original's reset_l0 draws them around 0.0
    (its condition treats the BatchNorm like the Linear layer), which nearly zeroes the layer.
    """
    params = dict(params)
    for i, name in enumerate(layer_names):
        if name not in params:
            raise ValueError(f"reset layer {name!r} not in the generator; it has {sorted(params)}.")
        layer = {}
        for leaf, value in params[name].items():
            noise = std * jax.random.normal(jax.random.fold_in(rng, i), value.shape, value.dtype)
            if leaf == "kernel":
                layer[leaf] = noise
            elif leaf == "scale":
                layer[leaf] = scale_mean + noise
            else:
                layer[leaf] = jnp.zeros_like(value)
        params[name] = layer
    return params
