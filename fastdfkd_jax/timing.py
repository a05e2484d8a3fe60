"""Wall-clock timing of device work: every measurement ends with `jax.block_until_ready`.

`timed` times one call; `PhaseTimer` accumulates seconds per named phase of a run (synthesis,
KD, evaluation), continuing from a resumed run's totals; `RunClock` keeps the rest of a run's
clocks (compilations, set-up) and gives the summary's timing part; `time_calls` and `summarize`
give the median, min and max of repeated calls after a warm-up call.
"""

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """`(seconds, fn(*args, **kwargs))`, the clock stopped when the output is ready on device."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


class PhaseTimer:
    """Seconds per named phase, accumulated over calls (and over resumes via `initial`)."""

    def __init__(self, initial: Mapping[str, float] | None = None):
        self.seconds: dict[str, float] = dict(initial or {})

    def __call__(self, phase: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs `fn(*args, **kwargs)`, adds its seconds to `phase`, returns its output."""
        seconds, out = timed(fn, *args, **kwargs)
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        return out

    def get(self, phase: str) -> float:
        return self.seconds.get(phase, 0.0)


# The phases whose seconds a resumed run goes on from: each epoch's record holds them, and so does
# a save inside an epoch (`epoch_progress.EpochProgress.seconds`).
CARRIED_PHASES = ("synthesis", "kd", "eval")


class RunClock:
    """A run's clocks beside its `PhaseTimer`: the wall time since it started, each compilation's
    seconds, the main thread's CPU seconds of compiling, the state's making and the set-up.

    `summary(phases)` is the summary's timing part: the phases' seconds, the compilations apart,
    and `other_seconds`, what neither covers (set-up, checkpoints, metrics, image grids).

    A resumed run sets `carried_seconds`, the run's seconds when its last record or save was made
    (`run_seconds` then): its total is then the whole run's, and work redone after that point
    counts once. Compilation and set-up are this process's; the earlier processes' are in
    `other_seconds`.
    """

    def __init__(self):
        self._start = time.perf_counter()
        self.carried_seconds = 0.0
        self.compile_seconds: dict[str, float] = {}  # part -> seconds, in the order compiled
        self.compile_cpu_seconds = 0.0
        self.init_seconds = 0.0
        self.setup_seconds = 0.0

    def elapsed(self) -> float:
        """Seconds since this process's clock started."""
        return time.perf_counter() - self._start

    def run_seconds(self) -> float:
        """The run's seconds so far: the earlier processes' (a resumed run) and this one's."""
        return self.carried_seconds + self.elapsed()

    @contextlib.contextmanager
    def compiling(self):
        """Adds the block's main-thread CPU seconds to `compile_cpu_seconds`: tracing and lowering
        are single-threaded Python, so on a loaded machine this is what they take on a quiet one.
        """
        start = time.thread_time()
        try:
            yield
        finally:
            self.compile_cpu_seconds += time.thread_time() - start

    def compiled(self, part: str, seconds: float) -> None:
        """Records the compilation seconds of `part` ('init', 'synthesis', 'kd', 'eval')."""
        self.compile_seconds[part] = seconds

    def end_setup(self) -> None:
        """Set-up ends: everything so far but the compilations (backend start, teacher, making
        the state, restoring it, the test split, the teacher's evaluation).
        """
        self.setup_seconds = self.elapsed() - sum(self.compile_seconds.values())

    def summary(self, phases: PhaseTimer) -> dict[str, float]:
        """The summary's timing keys (`<phase>_seconds`, `<part>_compile_seconds`, totals)."""
        total = self.run_seconds()
        compiling = sum(self.compile_seconds.values())
        busy = phases.get("synthesis") + phases.get("kd") + phases.get("eval")
        return dict(
            synthesis_seconds=phases.get("synthesis"),
            kd_seconds=phases.get("kd"),
            eval_seconds=phases.get("eval"),
            compile_seconds=compiling,
            **{f"{part}_compile_seconds": s for part, s in self.compile_seconds.items()},
            compile_cpu_seconds=self.compile_cpu_seconds,
            init_seconds=self.init_seconds,
            setup_seconds=self.setup_seconds,
            checkpoint_seconds=phases.get("checkpoint"),
            drain_seconds=phases.get("drain"),
            total_seconds=total,
            other_seconds=total - busy - compiling,
        )


def summarize(seconds: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """Median, min and max of `seconds`, each times `scale`, and the count `n`."""
    if not seconds:
        raise ValueError("No timed calls to summarize.")
    return dict(
        median_s=statistics.median(seconds) * scale,
        min_s=min(seconds) * scale,
        max_s=max(seconds) * scale,
        n=len(seconds),
    )


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]], repeats: int, idle_s: float = 0.0
) -> dict[str, list[float]]:
    """The seconds of `repeats` calls of each of `calls`, interleaved, by name.

    One untimed warm-up call each, then `repeats` rounds that call each once in turn (`timed`: the
    clock stops when the output is ready on device), each after `idle_s` seconds of idle. A load
    that comes and goes (other users of a shared machine) then hits every call alike, so ratios of
    their medians hold where absolute times drift.
    """
    for call in calls.values():
        jax.block_until_ready(call())
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            if idle_s:
                time.sleep(idle_s)
            seconds[name].append(timed(call)[0])
    return seconds


def time_calls(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """`summarize` of `repeats` timed calls of `call()`, after one untimed warm-up call."""
    jax.block_until_ready(call())  # first-call allocations and transfers
    return summarize([timed(call)[0] for _ in range(repeats)])
