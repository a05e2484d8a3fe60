"""One epoch of data-free distillation: its units, run in order, and where it may stop.

An epoch (0-based `epoch`): the synthesizer's `start_epoch` hook, then `rounds_per_epoch` rounds of
`calls_per_round(epoch)` synthesis calls followed, after `warmup` epochs, by the round's share of
`kd.steps` student steps in calls of `kd.steps_per_call`. Each call is a unit; a preemption
notice is read after every unit, and a run stopped inside an epoch resumes at its next unit with
the epoch's metric sums (`epoch_progress`). All randomness derives from the run's keys, the call
and the step index, so the units replay exactly.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from fastdfkd_jax import backend, compilation, components, distill, metric_files, synthesis, timing
from fastdfkd_jax.epoch_progress import EpochProgress, units_per_epoch
from fastdfkd_jax.state import DFKDState


@dataclasses.dataclass(frozen=True)
class Steps:
    """The run's compiled steps and their compile seconds.

    `kd` runs `kd_steps_per_call` student steps per call:
    `(state, teacher_vars, kd_key, first_step) -> (state, metrics summed over the steps)`.
    """

    synthesis: Callable
    kd: Callable
    kd_steps_per_call: int
    synthesis_compile_seconds: float
    kd_compile_seconds: float


def compile_steps(
    parts: components.Components, state: DFKDState, keys: dict[str, jax.Array]
) -> Steps:
    """Both steps compiled once, up front, on the run's mesh (the compilation timed on its own),
    under the config's precision policy.
    """
    config = parts.config
    per_call = config.kd.steps_per_call
    with compilation.precision_scope(config.precision):
        synth_fn, synth_seconds = parts.synthesizer.compile_call(
            state,
            parts.teacher_vars,
            keys["synthesis"],
            components.adv_array(config.synthesis.adv),
            mesh=parts.mesh,
        )
        kd_fn, kd_seconds = distill.compile_kd_steps(
            state,
            parts.teacher_vars,
            keys["kd"],
            mesh=parts.mesh,
            num_steps=per_call,
            unroll=backend.platform_of(parts.mesh) == backend.CPU,
            **components.kd_step_options(parts),
        )
    return Steps(synth_fn, kd_fn, per_call, synth_seconds, kd_seconds)


class EpochOutcome(NamedTuple):
    """What `train_epoch` returns.

    Attributes:
      state: the run state after it (its `epoch` advanced only when the epoch is complete).
      images: the last synthesized images [B, H, W, C] (None when no call ran since a resume).
      record: the epoch's metrics (None when it stopped inside the epoch).
      stopped: where it stopped inside the epoch on a preemption notice (None: it completed).
    """

    state: DFKDState
    images: jax.Array | None
    record: dict | None
    stopped: EpochProgress | None


def unit_bound(parts: components.Components) -> int:
    """An upper bound of the units of any epoch (`epoch_progress`): the within-epoch step scale."""
    synthesizer = parts.synthesizer
    kd_steps_per_round = parts.config.kd.steps // synthesizer.rounds_per_epoch
    kd_calls = -(-kd_steps_per_round // parts.config.kd.steps_per_call)  # as `train_epoch` counts
    return units_per_epoch(synthesizer.rounds_per_epoch, synthesizer.max_calls_per_round, kd_calls)


def within_epoch_step(parts: components.Components, epoch: int, units: int) -> int:
    """A count that orders every unit of the run: `units` done in `epoch` (0-based). The steps of
    the within-epoch checkpoints and of the multi-host preemption sync point.
    """
    return epoch * (unit_bound(parts) + 1) + units


def train_epoch(
    parts: components.Components,
    steps: Steps,
    state: DFKDState,
    keys: dict[str, jax.Array],
    epoch: int,
    timer: timing.PhaseTimer,
    *,
    resume: EpochProgress | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> EpochOutcome:
    """One epoch (0-based `epoch`), or what is left of it after `resume`.

    Metrics are the means over the epoch's synthesis rounds and student steps, and the student's
    learning rate at its last step. `should_stop(step)` is asked after each unit but the last
    (`step`: `within_epoch_step`); when it says so the epoch stops there and `stopped` says where.
    """
    config, synthesizer = parts.config, parts.synthesizer
    done_before = resume.units if resume is not None else 0
    if resume is None:
        state = state.replace(
            synthesizer=synthesizer.start_epoch(
                state.synthesizer, epoch, jax.random.fold_in(keys["epoch_start"], epoch)
            )
        )
        synth_mean, kd_mean = metric_files.Mean(), metric_files.Mean()
    else:
        synth_mean = metric_files.Mean(*resume.mean_args("synthesis"))
        kd_mean = metric_files.Mean(*resume.mean_args("kd"))
    adv = components.adv_array(synthesizer.adv_weight(epoch))
    rounds = synthesizer.rounds_per_epoch
    steps_per_round = config.kd.steps // rounds
    per_call = steps.kd_steps_per_call
    distilling = epoch >= config.warmup
    calls = synthesizer.calls_per_round(epoch)
    # The epoch's units in order: (round, 'synthesis', call) and (round, 'kd', first step).
    units = []
    for r in range(rounds):
        units += [(r, "synthesis", c) for c in range(calls)]
        if distilling:
            units += [(r, "kd", i) for i in range(0, steps_per_round, per_call)]

    def asks_to_stop(finished_units):
        return (
            should_stop is not None
            and finished_units < len(units)
            and should_stop(within_epoch_step(parts, epoch, finished_units))
        )

    def kd_units(state, first_unit):
        # The round's student step calls from `first_unit`, dispatched without waiting (the
        # timer waits once at the end); a stop notice is honoured between two of them.
        r = units[first_unit][0]
        u = first_unit
        in_flight = None
        while u < len(units) and units[u][:2] == (r, "kd"):
            first = (epoch * rounds + r) * steps_per_round + units[u][2]
            # Step `first + i` uses fold_in(kd key, first + i), however many steps a call runs.
            state, step_metrics = steps.kd(state, parts.teacher_vars, keys["kd"], np.int32(first))
            kd_mean.add(step_metrics, count=per_call)
            # At most one call queued behind the running one: a notice waits for one unit, not
            # for all the round's calls already dispatched.
            if in_flight is not None:
                jax.block_until_ready(in_flight)
            in_flight = step_metrics
            u += 1
            if asks_to_stop(u):
                return state, u, True
        return state, u, False

    images = None
    u = done_before
    while u < len(units):
        r, kind, index = units[u]
        if kind == "synthesis":
            call = (epoch * rounds + r) * synthesizer.max_calls_per_round + index
            state, images, synth_metrics = timer(
                "synthesis",
                steps.synthesis,
                state,
                parts.teacher_vars,
                jax.random.fold_in(keys["synthesis"], call),
                adv,
            )
            synth_mean.add(synth_metrics)
            metric_files.check_finite(jax.device_get(synth_metrics), epoch + 1, "synthesis")
            u += 1
            stop = asks_to_stop(u)
        else:
            state, u, stop = timer("kd", kd_units, state, u)
        if stop:
            means = {"synthesis": synth_mean, "kd": kd_mean}
            # The clocks a resume carries on, as from an epoch boundary's record.
            clocks = {phase: timer.get(phase) for phase in timing.CARRIED_PHASES}
            stopped = EpochProgress.of(epoch, u, means, clocks)
            return EpochOutcome(state, images, None, stopped)
    record = synth_mean.result()
    if distilling:
        kd_record = kd_mean.result()
        metric_files.check_finite(kd_record, epoch + 1, "distillation")
        kd_record["learning_rate"] = float(parts.schedule(int(state.student.step) - 1))
        record.update(kd_record)
    return EpochOutcome(state.replace(epoch=state.epoch + 1), images, record, None)


def synthesis_calls(synthesizer: synthesis.Synthesizer, epochs: int) -> int:
    """The synthesis calls of a run of `epochs` epochs."""
    rounds = synthesizer.rounds_per_epoch
    return sum(rounds * synthesizer.calls_per_round(epoch) for epoch in range(epochs))
