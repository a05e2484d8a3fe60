"""Run outputs: `metrics.jsonl`, `summary.json`, PNG sample grids, a progress bar.

Only the primary process (index 0) writes; the others get no-op writers, so multi-host runs write
each file once.
"""

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from PIL import Image

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def is_primary() -> bool:
    return jax.process_index() == 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        value = np.asarray(value)
        return value.item() if value.ndim == 0 else value.tolist()
    return value


class MetricsWriter:
    """Appends one JSON object per line to `workdir/metrics.jsonl`."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, METRICS_FILE)
        self.enabled = is_primary()

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after `step`: a resumed run logs them again."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **_jsonable(dict(metrics))}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    """The records of `workdir/metrics.jsonl` ([] when there is none, e.g. on other hosts)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
    if not is_primary():
        return
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        json.dump(_jsonable(dict(summary)), f, indent=2, sort_keys=True)


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
