"""The benchmark's timing pass: repeated synthesis calls of several configs, interleaved."""

import dataclasses
from typing import Any

import jax
import ml_collections

from fastdfkd_jax import components, data, timing
from fastdfkd_jax.state import DFKDState


@dataclasses.dataclass
class Setup:
    """A distillation config's parts and a fresh state, placed as the trainer places them."""

    parts: components.Components
    state: DFKDState


def make_setup(config: ml_collections.ConfigDict, teacher_cache: dict | None = None) -> Setup:
    """The parts and a fresh `DFKDState` of `config`.

    Synthesis time does not depend on the weights' values, so a fresh state times like a trained
    one. `teacher_cache` ((checkpoint, arch) -> (module, variables)) avoids reloading a teacher.
    """
    key = (config.teacher.checkpoint, config.teacher.arch)
    teacher = teacher_cache.get(key) if teacher_cache is not None else None
    if teacher is None:
        teacher = components.load_teacher(config, data.get_info(config.dataset.name))
        if teacher_cache is not None:
            teacher_cache[key] = teacher
    parts = components.build(config, teacher=teacher)
    return Setup(parts, components.init_state(parts, components.run_keys(config.seed)))


class SynthesisTimer:
    """Times repeated synthesis calls of one config; the state is threaded through the calls."""

    def __init__(self, setup: Setup):
        self.setup = setup
        parts = setup.parts
        self.adv = components.adv_array(parts.config.synthesis.adv)
        self.call, self.compile_seconds = parts.synthesizer.compile_call(
            setup.state,
            parts.teacher_vars,
            jax.random.PRNGKey(0),
            self.adv,
            mesh=parts.mesh,
        )
        # The compiled executable (None for DeepInversion's host-driven chunks).
        self.compiled: Any = self.call if hasattr(self.call, "memory_analysis") else None
        self.state = setup.state
        self.calls = 0
        self.seconds: list[float] = []

    def step(self) -> Any:
        """One call, its new state kept; returns its outputs (images, metrics) to wait on."""
        parts = self.setup.parts
        rng = jax.random.fold_in(jax.random.PRNGKey(parts.config.seed), self.calls)
        self.calls += 1
        self.state, *outputs = self.call(self.state, parts.teacher_vars, rng, self.adv)
        return self.state, outputs

    def once(self) -> float:
        """One call, ended by `block_until_ready()`; returns its seconds."""
        return timing.timed(self.step)[0]


def time_round_robin(timers: dict[str, SynthesisTimer], repeats: int) -> None:
    """Warms every timer up, then records `repeats` calls of each, interleaved
    (`timing.time_interleaved`) into their `seconds`.
    """
    seconds = timing.time_interleaved({name: t.step for name, t in timers.items()}, repeats)
    for name, timer in timers.items():
        timer.seconds.extend(seconds[name])
