"""Metric writers (clu-style) and per-epoch averaging of training metrics.

A `MetricWriter` takes `write_scalars(step, {name: scalar})`, `flush()` and `close()`.
`JsonlWriter` appends to `WORKDIR/metrics.jsonl` (one JSON object per line, the step under
`"step"`), `TensorBoardWriter` writes TensorBoard event files without TensorFlow (tensorboardX),
`MultiWriter` fans out to several. `create_writer(workdir, resume_step)` gives the jobs' writer:
both files on the primary process, nothing elsewhere; on a resume, records after `resume_step`
are dropped (the run logs them again).

`Mean` keeps a step's metrics on device and averages them once per epoch (one transfer); a
compiled call of several steps adds their sums with `count`.
"""

import abc
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import tensorboardX

from fastdfkd_jax import reporting

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter(abc.ABC):
    """Writes scalar metrics at integer steps."""

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Records `scalars` (name -> number) at `step`."""

    def flush(self) -> None:  # noqa: B027 -- optional for writers without buffers
        """Makes everything written so far durable."""

    def close(self) -> None:
        self.flush()


class JsonlWriter(MetricWriter):
    """Appends `{"step": step, **scalars}` per call to `path` (one JSON object per line)."""

    def __init__(self, path: str):
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after `step`: a resumed run logs them again."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        record = {"step": int(step), **reporting.jsonable(dict(scalars))}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class TensorBoardWriter(MetricWriter):
    """TensorBoard event files in `logdir` (tensorboardX: no TensorFlow needed).

    `purge_step`: on a resume, TensorBoard discards events at steps >= it written before.
    """

    def __init__(self, logdir: str, purge_step: int | None = None):
        self._writer = tensorboardX.SummaryWriter(logdir, purge_step=purge_step)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in scalars.items():
            if value is not None and np.ndim(value) == 0:
                self._writer.add_scalar(name, float(value), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MultiWriter(MetricWriter):
    """Writes to every writer of `writers`."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def create_writer(workdir: str, resume_step: int | None = None) -> MetricWriter:
    """`metrics.jsonl` and TensorBoard events under `workdir` (no-op off the primary process).

    `resume_step`: the step the run resumes from (None or 0: a fresh run); records after it are
    dropped from `metrics.jsonl` and hidden in TensorBoard.
    """
    if not reporting.is_primary():
        return MultiWriter([])
    jsonl = JsonlWriter(os.path.join(workdir, METRICS_FILE))
    if resume_step is not None:
        jsonl.truncate_after(resume_step)
    purge = resume_step + 1 if resume_step else None
    board = TensorBoardWriter(os.path.join(workdir, TENSORBOARD_DIR), purge_step=purge)
    return MultiWriter([jsonl, board])


def read_metrics(workdir: str) -> list[dict]:
    """The records of `workdir/metrics.jsonl` ([] when there is none, e.g. on other hosts)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Mean:
    """The mean of each metric over the steps of an epoch.

    `add` keeps a call's metrics (device scalars) without waiting for them or dispatching any
    work; `result` transfers them all at once, sums on the host and divides by the step count.
    A run stopped inside an epoch keeps `sums()` and `count`; `Mean(sums, count)` goes on adding
    to them in the same order, so the result is the uninterrupted one, bit for bit.
    """

    def __init__(self, sums: Mapping[str, float] | None = None, count: int = 0):
        self._sums: dict[str, float] = dict(sums or {})
        self._records: list[dict] = []
        self._count = count

    def add(self, metrics: Mapping[str, jax.Array], count: int = 1) -> None:
        """Adds one call's metrics: one step's values, or the sums over `count` steps."""
        self._records.append(dict(metrics))
        self._count += count

    @property
    def count(self) -> int:
        """The steps added."""
        return self._count

    def sums(self) -> dict[str, float]:
        """{name: sum} as Python floats, added in the order of the calls."""
        if self._records:
            records = jax.device_get(self._records)
            for name in records[0]:
                total = self._sums.get(name, 0)
                for record in records:
                    total += float(record[name])
                self._sums[name] = total
            self._records = []
        return dict(self._sums)

    def result(self) -> dict[str, float]:
        """{name: mean} as Python floats ({} when nothing was added)."""
        return {name: total / self._count for name, total in self.sums().items()}


def check_finite(metrics: Mapping[str, Any], epoch: int, where: str) -> None:
    """Raises a FloatingPointError naming the first metric that is NaN or infinite."""
    for name, value in metrics.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(
                f"{where} {name} became {value} at epoch {epoch}; stopping. The last good "
                "checkpoint is kept."
            )
