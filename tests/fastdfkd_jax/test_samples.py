"""Sample grids: one row per predicted class, cells apart, each labelled; the teacher's labels."""

import jax
import jax.numpy as jnp
import numpy as np

from fastdfkd_jax import samples, sharding
from tests.fastdfkd_jax import tiny


def test_labelled_grid_layout_rows_by_class_and_cells_apart():
    rng = np.random.RandomState(0)
    images = rng.rand(12, 8, 8, 1).astype(np.float32)
    classes = np.array([3, 1, 3, 3, 1, 0, 3, 3, 3, 3, 3, 3])  # class 3: 9 images, over 8 columns
    probs = np.linspace(0.1, 0.9, 12)
    grid = samples.labelled_grid(images, classes, probs, num_classes=5, columns=8)
    cell = 8 * 6  # 8 pixels upscaled to at least MIN_CELL = 48
    row_h = cell + samples.LABEL_HEIGHT + samples.BORDER
    # Three rows (classes 0, 1, 3 present; 2 and 4 absent), eight columns.
    assert grid.shape == (
        3 * row_h + samples.BORDER,
        8 * (cell + samples.BORDER) + samples.BORDER,
        3,
    )
    b = samples.BORDER
    # Row 0 is class 0 (image 5), row 1 class 1 (images 1, 4), row 2 class 3 (its first 8).
    for row, index in ((0, 5), (1, 1), (1, 4), (2, 0), (2, 9)):
        col = {5: 0, 1: 0, 4: 1, 0: 0, 9: 6}[index]
        top, left = b + row * row_h, b + col * (cell + b)
        want = (images[index, ..., 0] * 255 + 0.5).astype(np.uint8).repeat(6, 0).repeat(6, 1)
        np.testing.assert_array_equal(grid[top : top + cell, left : left + cell, 0], want)
    # Borders between cells are gray; the label strip under a cell is dark with light text.
    assert (grid[:b] == samples.BORDER_GRAY).all()
    assert (grid[b : b + cell, b + cell : b + cell + b] == samples.BORDER_GRAY).all()
    strip = grid[b + cell : b + cell + samples.LABEL_HEIGHT, b : b + cell]
    assert (strip == 0).mean() > 0.5 and (strip > 128).any()  # antialiased text
    # Empty cells of a short row stay border gray.
    assert (grid[b : b + cell, b + 2 * (cell + b) : b + 2 * (cell + b) + cell] == 128).all()


def test_teacher_labels_are_the_argmax_and_its_softmax_probability():
    teacher, tv, _, _ = tiny.make_models(jax.random.PRNGKey(0))
    mesh = sharding.make_mesh(sharding.mesh_config())
    images = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (6, *tiny.IMAGE_SHAPE)))
    mean, std = (0.5,) * tiny.IMAGE_SHAPE[-1], (0.25,) * tiny.IMAGE_SHAPE[-1]
    classes, probs = samples.TeacherLabels(teacher, tv, mean, std, mesh)(images)
    logits = teacher.apply(tv, (jnp.asarray(images) - 0.5) / 0.25, train=False)
    p = jax.nn.softmax(logits, axis=-1)
    np.testing.assert_array_equal(classes, np.argmax(p, -1))
    np.testing.assert_allclose(probs, np.max(p, -1), rtol=1e-6)
