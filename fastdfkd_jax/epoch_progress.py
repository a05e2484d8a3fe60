"""Where a run stands inside an epoch: what a save between two epochs needs to resume exactly.

An epoch is a sequence of units: each round's synthesis calls, then that round's student step
calls (`kd.steps_per_call` steps each). A preemption notice is honoured after any unit: the run
saves its state with an `EpochProgress` (the epoch under way, the units done, the epoch's metric
sums so far and the phase clocks) as the checkpoint's metadata. The resumed run skips the units
done and adds to the same sums in the same order, so its final state and every metrics record
(timings aside) are bit for bit those of an uninterrupted run.
"""

import dataclasses
from typing import Any

from absl import logging

from fastdfkd_jax import checkpoint, checks


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """A run stopped inside an epoch.

    Attributes:
      epoch: the epoch under way (0-based: `epoch` epochs are complete).
      units: the units of it that are done (>= 1).
      sums: each running mean's sums so far ({'synthesis': {...}, 'kd': {...}}: the
        distillation job's; {'train': {...}}: the teacher job's), as `metric_files.Mean.sums`.
      counts: each running mean's step count.
      seconds: the phase clocks (`timing.PhaseTimer.seconds`) when it stopped.
      run_seconds: the run's wall-clock seconds when it stopped (`timing.RunClock.run_seconds`;
        0 in a save made before this was kept).
    """

    epoch: int
    units: int
    sums: dict[str, dict[str, float]]
    counts: dict[str, int]
    seconds: dict[str, float]
    run_seconds: float = 0.0

    @classmethod
    def of(
        cls, epoch: int, units: int, means: dict[str, Any], seconds: dict[str, float]
    ) -> "EpochProgress":
        """The progress of `means` ({name: `metric_files.Mean`}) after `units` units."""
        return cls(
            epoch=epoch,
            units=units,
            sums={name: mean.sums() for name, mean in means.items()},
            counts={name: mean.count for name, mean in means.items()},
            seconds=dict(seconds),
        )

    def mean_args(self, name: str) -> tuple[dict[str, float], int]:
        """`(sums, count)` of the running mean `name`, to go on with (`metric_files.Mean(*...)`)."""
        return self.sums.get(name, {}), self.counts.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (floats as Python floats: they round-trip exactly)."""
        return {"epoch_progress": dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, metadata: dict[str, Any] | None) -> "EpochProgress | None":
        """The progress a checkpoint's metadata holds, or None (a save at an epoch boundary)."""
        if not metadata or "epoch_progress" not in metadata:
            return None
        return cls(**metadata["epoch_progress"])


def units_per_epoch(rounds: int, calls_per_round: int, kd_calls_per_round: int) -> int:
    """The units of an epoch: each round's synthesis calls and student step calls."""
    return rounds * (calls_per_round + kd_calls_per_round)


# Checkpoints kept inside epochs: the latest, and one to fall back on if it cannot be read.
WITHIN_EPOCH_KEPT = 2


def restore_latest(
    manager: Any, within: Any, target: Any
) -> tuple[Any, int | None, EpochProgress | None]:
    """The latest saved state, into `target`'s structure: `(state, step, progress)`.

    A within-epoch checkpoint (`within`) is taken when it is no older than the last epoch
    boundary's (`manager`), with where it stopped (`progress`); one that cannot be read falls back
    to the epoch boundary with a warning. Every other within-epoch checkpoint is deleted.
    `(target, None, None)` when nothing is saved.
    """
    last_boundary = max(manager.all_steps(), default=0)
    ahead = []
    for step in within.all_steps():
        progress = _progress_of(within, step)
        if progress is not None and progress.epoch >= last_boundary:
            ahead.append(step)
    restored = None
    if ahead:
        try:
            state, step = checkpoint.restore_latest(within, target, steps=ahead)
            restored = (state, step, _progress_of(within, step))
        except checks.UserInputError as error:
            logging.warning("%s Resuming from the last epoch boundary instead.", error)
    # The other within-epoch checkpoints are older than where the run resumes, or unreadable: a
    # later save could otherwise meet one's step number.
    for step in within.all_steps():
        if restored is None or step != restored[1]:
            within.delete(step)
    if restored is not None:
        return restored
    state, step = checkpoint.restore_latest(manager, target)
    return state, step, None


def _progress_of(within: Any, step: int) -> EpochProgress | None:
    try:
        return EpochProgress.from_json(checkpoint.metadata_of(within, step))
    except Exception as error:  # noqa: BLE001 (a broken checkpoint's metadata: orbax's many kinds)
        logging.warning(
            "Checkpoint %d in %s has no readable metadata (%s).", step, within.directory, error
        )
        return None
