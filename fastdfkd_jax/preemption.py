"""Preemption: a reclaimed VM's SIGTERM becomes a checkpoint at the next step boundary and a
documented exit, so rerunning the same command resumes the run exactly.

`Watch` installs a SIGTERM handler that only sets a flag (in the main thread; nothing else runs
in the handler). The distillation trainer asks `should_stop(step)` after each unit of an epoch (a
synthesis call or a student step call; `step` orders all of them, `epoch.within_epoch_step`), the
teacher job after each training step: in a single process it is the flag; in a multi-process
run it is JAX's preemption sync point (`multihost_utils.reached_preemption_sync_point`, which the
distributed service raises on every host at the same call), so every host saves the same step.
Checkpoints are saved with `force` (`checkpoint.save`), so orbax does not ask the sync point
itself with its own step numbers.
The trainer then saves (inside an epoch: with where it stopped, `epoch_progress`), flushes its
metrics and raises `Preempted`; the `fastdfkd` command exits with `PREEMPTED_STATUS`, distinct
from success (0), failure (1) and a user's mistake (2).

The resumed run replays the rest exactly: its final state equals an uninterrupted run's bit for
bit (tests/fastdfkd_jax/test_train.py).
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils

# The exit status of a preempted run: resumable by running the same command again (BSD's
# EX_TEMPFAIL, "try again later").
PREEMPTED_STATUS = 75


class Preempted(Exception):  # noqa: N818 (a signal received, not an error)
    """The run saved its state and stopped on a preemption notice: at the end of `epoch` (epochs
    done), or `units` units into the next (`epoch_progress`).
    """

    def __init__(self, epoch: int, units: int = 0):
        where = f"epoch {epoch}" if not units else f"{units} units into epoch {epoch + 1}"
        super().__init__(
            f"preempted: the run saved {where} and stopped; run the same command again to "
            "resume it."
        )
        self.epoch, self.units = epoch, units


class Watch:
    """Watches for a preemption notice while a run trains: SIGTERM in a single process (its
    handler only sets a flag), JAX's preemption sync point across processes (the distributed
    service handles the signal there), or `notify()` (tests, schedulers: the same notice by code).
    """

    def __init__(self):
        self._flag = threading.Event()
        self._asked = 0  # calls of `should_stop`: the sync point's step, 1, 2, 3, ...
        self._previous = None
        self._multi = jax.process_count() > 1
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        _WATCHES.add(self)

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self._flag.set()

    def should_stop(self, step: int) -> bool:
        """Whether to save and stop after `step` (the run's position, increasing), the same
        answer on every host.

        The multi-host sync point is asked with the count of calls instead: the distributed
        service sets it one past the largest step any host has reported and answers yes only at
        exactly that step, so every step must be asked; every host makes the same calls in the
        same order, so the counts agree and leave no gap.
        """
        self._asked += 1
        if self._multi:
            return bool(multihost_utils.reached_preemption_sync_point(self._asked))
        return self._flag.is_set()

    def close(self) -> None:
        """Restores the SIGTERM handler that was there before."""
        _WATCHES.discard(self)
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The watches of the runs under way in this process (`notify` reaches them).
_WATCHES: set[Watch] = set()


def notify() -> None:
    """A preemption notice by code: every run under way in this process saves and stops after its
    current unit, as on SIGTERM.
    """
    for watch in list(_WATCHES):
        watch._flag.set()  # noqa: SLF001 (the module's own class)
