"""What the distillation trainer needs of a synthesis method, and the pool-based default.

A synthesizer is a frozen dataclass (static configuration) whose state is passed in and out; the
trainer (`fastdfkd_jax.train`) talks to it only through `Synthesizer`:

- `init(rng)`: the method's own state (`DFKDState.synthesizer`): a meta generator, a continuously
  trained generator, a contrastive head and its memory bank, or nothing;
- `synthesize(...)`: one synthesis call (pure, jittable): new state, BN memory, images, metrics;
- `kd_images(state, rng, batch)`: where the student's KD batches come from (pure, jittable): the
  image pool, or fresh samples of a generator;
- `adv_weight(epoch)`, `start_epoch(state, epoch, rng)`, `rounds_per_epoch`: the method's schedule,
  on the host (when the adversarial term starts, resets of generator layers, how many synthesis
  rounds each followed by `kd.steps` student steps make an epoch);
- `compile_call(...)`: the compiled synthesis call on the run's mesh (DeepInversion drives its
  steps from the host in chunks; the others are one compiled function);
- `meta_gradient_label`: what the run summary and the benchmark call its meta-gradient.

`PoolSynthesis` implements all but `init` and `synthesize` for methods that put each batch in the
pool and train the student on draws from it (FastDFKD, DeepInversion); a generative method
overrides `kd_images` to sample its generator instead.
"""

import functools
from collections.abc import Callable
from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from fastdfkd_jax import compilation, sharding
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import Objective

# `(state, teacher_vars, rng, adv_weight) -> (state, images [B, H, W, C], metrics)`.
SynthesisCall = Callable[[Any, dict, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


class Synthesizer(Protocol):
    """The interface between a synthesis method and the trainer (see the module docstring).

    `state` arguments of `kd_images`, `start_epoch`'s result aside, are `DFKDState`s: the
    synthesizer reads `state.synthesizer` (its own state) and `state.pool`.
    """

    objective: Objective
    batch_size: int
    rounds_per_epoch: int

    def init(self, rng: jax.Array) -> Any: ...

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

    The dataclass provides `adv` (the adversarial weight) and `adv_warmup` (epochs before the
    adversarial term switches on).
    """

    adv: float
    adv_warmup: int
    rounds_per_epoch: int = 1

    def kd_images(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        """`batch_size` images drawn uniformly from the pool, float32 [B, H, W, C] in [0, 1]."""
        return pool_lib.sample(state.pool, rng, batch_size)

    def adv_weight(self, epoch: int) -> float:
        return self.adv if epoch >= self.adv_warmup else 0.0

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
