"""Run outputs: `summary.json`, PNG sample grids, markdown tables, and a background writer.

Only the primary process (index 0) writes files, so multi-host runs write each file once
(metrics: `fastdfkd_jax.metric_files`). `BackgroundWriter` runs writes off the run's hot path.
"""

import concurrent.futures
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image

SUMMARY_FILE = "summary.json"


def is_primary() -> bool:
    """Whether this is process 0, the one that writes files."""
    return jax.process_index() == 0


def jsonable(value: Any) -> Any:
    """`value` with numpy and JAX arrays turned into Python numbers and lists."""
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        value = np.asarray(value)
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
    if not is_primary():
        return
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        json.dump(jsonable(dict(summary)), f, indent=2, sort_keys=True)


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tiles `[N, H, W, C]` images in [0, 1] into one `[rows*H, columns*W, C]` uint8 image."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, c), np.float32)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def save_image_grid(path: str, images: np.ndarray, *, upscale: int = 1) -> None:
    """Writes a PNG grid of `[N, H, W, C]` images in [0, 1], each pixel `upscale` times larger."""
    if not is_primary():
        return
    grid = image_grid(images)
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    Image.fromarray(grid).save(path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table: `header` names, `rows` of cells (already formatted or `str()`-able).

    `align`: one letter per column, 'l' or 'r' (default: first column left, the others right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns.")
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class BackgroundWriter:
    """File writes (sample grids, metric records) in one background thread, in submission order.

    Keeps PNG encoding and file I/O off a run's hot path. An exception raised by a write is raised
    again by the next `submit`, `wait` or `close`.
    """

    def __init__(self):
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="fastdfkd-writer"
        )
        self._pending: list[concurrent.futures.Future] = []

    def _collect(self, wait: bool) -> None:
        still = []
        for future in self._pending:
            if wait or future.done():
                future.result()  # re-raises the write's exception
            else:
                still.append(future)
        self._pending = still

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Runs `fn(*args, **kwargs)` after the writes submitted before it."""
        self._collect(wait=False)
        self._pending.append(self._executor.submit(fn, *args, **kwargs))

    def wait(self) -> None:
        """Blocks until every submitted write is done."""
        self._collect(wait=True)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
