"""Sample grids of synthetic images that a reader can check: cells apart, each labelled.

`save_epoch_samples` writes a run's grid of an epoch. `labelled_grid` sorts a batch by the
teacher's predicted class, one row per class (up to `columns` images each), each cell upscaled to
at least `MIN_CELL` pixels, separated by a border, with the class and the teacher's probability
written under it. `TeacherLabels` gives those predictions: one jitted forward pass of the teacher
on the batch, compiled on its first use.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from fastdfkd_jax import reporting, sharding

# The smallest side of a cell on screen, in pixels (8x8 digits become 48x48), so the label fits.
MIN_CELL = 48
BORDER = 2  # pixels between cells
LABEL_HEIGHT = 12  # the strip under each cell (PIL's default bitmap font is 11 pixels high)
BORDER_GRAY = 128
LABEL_GRAY = 255


class TeacherLabels:
    """`(images [N, H, W, C] in [0, 1]) -> (classes int [N], probabilities float [N])`: the
    teacher's predicted class and its softmax probability, on the run's mesh.
    """

    def __init__(self, teacher: nn.Module, teacher_vars: Any, mean, std, mesh):
        self._vars, self._mesh = teacher_vars, mesh
        mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

        @functools.partial(jax.jit, out_shardings=sharding.replicated(mesh))
        def predict(variables, images):
            logits = teacher.apply(variables, (images - mean) / std, train=False)
            probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
            return jnp.argmax(probs, axis=-1), jnp.max(probs, axis=-1)

        self._predict = predict

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = sharding.replicate(jnp.asarray(images, jnp.float32), self._mesh)
        classes, probs = self._predict(self._vars, images)
        return np.asarray(classes), np.asarray(probs)


def labelled_grid(
    images: np.ndarray,
    classes: np.ndarray,
    probs: np.ndarray,
    num_classes: int,
    columns: int = 8,
) -> np.ndarray:
    """One row per predicted class present, up to `columns` images each, cells apart and labelled.

    Args:
      images: float [N, H, W, C] in [0, 1].
      classes: int [N], the teacher's predicted class of each image.
      probs: float [N], its probability.
      num_classes: K (rows are in class order 0..K-1; empty classes have no row).
      columns: images per row at most.

    Returns:
      uint8 [rows * (cell + LABEL_HEIGHT + BORDER) + BORDER, columns * (cell + BORDER) + BORDER, 3]
      with cell = H * max(1, ceil(MIN_CELL / H)) (square pixels: W scaled alike).
    """
    n, h, w, c = images.shape
    if classes.shape != (n,) or probs.shape != (n,):
        raise ValueError(f"classes {classes.shape} and probs {probs.shape} must be [{n}].")
    scale = max(1, math.ceil(MIN_CELL / min(h, w)))
    ch, cw = h * scale, w * scale
    rows = [np.flatnonzero(classes == k)[:columns] for k in range(num_classes)]
    rows = [r for r in rows if r.size]
    height = len(rows) * (ch + LABEL_HEIGHT + BORDER) + BORDER
    width = columns * (cw + BORDER) + BORDER
    canvas = Image.new("RGB", (width, height), (BORDER_GRAY,) * 3)
    draw = ImageDraw.Draw(canvas)
    pixels = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    for r, members in enumerate(rows):
        top = BORDER + r * (ch + LABEL_HEIGHT + BORDER)
        for col, i in enumerate(members):
            left = BORDER + col * (cw + BORDER)
            cell = pixels[i].repeat(scale, axis=0).repeat(scale, axis=1)[..., :3]
            canvas.paste(Image.fromarray(cell), (left, top))
            draw.rectangle((left, top + ch, left + cw - 1, top + ch + LABEL_HEIGHT - 1), fill=0)
            draw.text((left + 1, top + ch), f"{classes[i]}: {probs[i]:.0%}", fill=(LABEL_GRAY,) * 3)
    return np.asarray(canvas)


def save_labelled_grid(path: str, images, classes, probs, num_classes: int) -> None:
    """Writes `labelled_grid` as a PNG (on the primary process only)."""
    if not reporting.is_primary():
        return
    Image.fromarray(labelled_grid(images, classes, probs, num_classes)).save(path)


def save_epoch_samples(
    parts: Any,
    labels: TeacherLabels | None,
    background: reporting.BackgroundWriter,
    path: str,
    images: jax.Array,
) -> None:
    """An epoch's synthesized batch as a PNG at `path`, written by `background`.

    With `labels` (the teacher's predictions: classifiers), one row per class the teacher
    predicts, each image labelled with its class and probability (`labelled_grid`); without
    (segmentation), `sample_grid_size` images side by side. `parts`: the run's
    `components.Components`.
    """
    config, info = parts.config, parts.info
    host_images = sharding.to_host(images)  # gathered across hosts
    if labels is None:
        background.submit(
            reporting.save_image_grid,
            path,
            host_images[: config.sample_grid_size],
            upscale=config.sample_upscale,
        )
        return
    classes, probs = labels(host_images)
    background.submit(save_labelled_grid, path, host_images, classes, probs, info.num_classes)
