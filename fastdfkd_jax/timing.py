"""Wall-clock timing of device work: every measurement ends with `jax.block_until_ready`.

`timed` times one call; `PhaseTimer` accumulates seconds per named phase of a run (synthesis,
KD, evaluation), continuing from a resumed run's totals; `time_calls` and `summarize` give the
median, min and max of repeated calls after a warm-up call.
"""

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


def time_calls(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """`summarize` of `repeats` timed calls of `call()`, after one untimed warm-up call."""
    jax.block_until_ready(call())  # first-call allocations and transfers
    return summarize([timed(call)[0] for _ in range(repeats)])
