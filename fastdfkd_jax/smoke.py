"""Stand-ins for a run's real data and teacher, for smoke tests only (`config.smoke_test`).

The `runlocal` variants of the ImageNet and NYUv2 distillation configs run end to end on a
machine that has neither the data sets nor a trained teacher. With `smoke_test=True` (set by those
variants only; every real variant has False, and the run summary records it) the trainer:

- evaluates on a generated test split instead of the real one (`mock_test_split`): for
  `imagenet2012`, examples from `tfds.testing.mock_data` (random images and labels) sent through
  the real TFDS reader and evaluation view; for `nyuv2`, a few generated images and label maps
  written in the NYUv2 folder layout (`write_nyuv2_layout`) and read by the real loader;
- uses a randomly initialized teacher of `teacher.arch`, saved once under the work directory
  (`init_teacher`), instead of `teacher.checkpoint`.

Nothing here means anything about accuracy: it checks that every part of the run path works.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image

from fastdfkd_jax import checkpoint, models
from fastdfkd_jax.data import base, imagenet, nyuv2, streaming

# Where under the work directory the stand-ins live.
TEACHER_DIR = "smoke_teacher"
DATA_DIR = "smoke_data"
# Data sets with a generated stand-in, and how many test examples it has (a few batches).
MOCKED = ("imagenet2012", "nyuv2")
NUM_EXAMPLES = 6
# Generated NYUv2 label maps: blocks of this many pixels per class, and an unlabeled corner.
NYUV2_LABEL_BLOCK = 40


def mock_imagenet_test_split(data_dir: str, num_examples: int, image_size: int):
    """`num_examples` examples of `tfds.testing.mock_data` through the real ImageNet reader, in
    the evaluation view at `image_size` (resize of the shorter side by torchvision's 256/224),
    held in memory (the mock only exists inside its context).
    """
    import tensorflow_datasets as tfds

    resize = round(image_size * imagenet.RESIZE_SIZE / imagenet.CROP_SIZE)
    with tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE):
        source = imagenet.open_tfds("test", data_dir, resize=resize, crop=image_size)
        examples = [source[i] for i in range(len(source))]
    return streaming.ArraySource(
        {
            "image": np.stack([e["image"] for e in examples]),
            "label": np.asarray([e["label"] for e in examples], np.int32),
        }
    )


def write_nyuv2_layout(root: str, split: str, num_examples: int, seed: int = 0) -> str:
    """Writes `num_examples` generated pairs in NYUv2's layout (`data/nyuv2.py`) under `root`.

    Images are smooth RGB gradients at NYUv2's 480x640; label maps hold blocks of random classes
    and an unlabeled (255) corner. Existing files are kept (a resumed run reads the same split).

    Returns:
      `root`.

    """
    rng = np.random.default_rng(seed)
    h, w = nyuv2.NYUV2_SIZE
    block = NYUV2_LABEL_BLOCK
    for folder in (nyuv2.IMAGE_DIR, nyuv2.LABEL_DIRS[0]):
        os.makedirs(os.path.join(root, folder, split), exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(num_examples):
        name = f"{k:05d}.png"
        image = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, rng.integers(256))], -1)
        label = rng.integers(0, nyuv2.INFO.num_classes, (h // block, w // block))
        label = label.repeat(block, 0).repeat(block, 1)
        label[:block, :block] = base.IGNORE_LABEL
        image_path = os.path.join(root, nyuv2.IMAGE_DIR, split, name)
        label_path = os.path.join(root, nyuv2.LABEL_DIRS[0], split, name)
        if not os.path.exists(image_path):
            PIL.Image.fromarray(image.astype(np.uint8)).save(image_path)
            PIL.Image.fromarray(label.astype(np.uint8)).save(label_path)
    return root


def mock_test_split(
    dataset: str, workdir: str, num_examples: int, image_size: int
) -> streaming.ExampleSource:
    """The generated test split of `dataset` (see the module docstring).

    Args:
      dataset: `imagenet2012` or `nyuv2`.
      workdir: the run's work directory (the stand-in files go to `WORKDIR/smoke_data`).
      num_examples: examples in the split.
      image_size: ImageNet's evaluation crop (NYUv2 evaluates whole 256x341 images).

    Raises:
      ValueError: a data set without a stand-in.

    """
    if dataset not in MOCKED:
        raise ValueError(f"smoke_test has generated data for {MOCKED} only, not {dataset!r}.")
    directory = os.path.join(os.path.abspath(workdir), DATA_DIR)
    if dataset == "imagenet2012":
        return mock_imagenet_test_split(directory, num_examples, image_size)
    return nyuv2.open_source("test", write_nyuv2_layout(directory, "test", num_examples))


def init_teacher(arch: str, info: base.DatasetInfo, workdir: str, seed: int) -> str:
    """A randomly initialized `arch` teacher for `info`, saved once in `WORKDIR/smoke_teacher`.

    Returns:
      The teacher directory (written by `checkpoint.save_teacher`, read like any other).

    """
    directory = os.path.join(os.path.abspath(workdir), TEACHER_DIR)
    if os.path.exists(os.path.join(directory, "meta.json")):
        return directory
    model = models.create_model(arch, num_classes=info.num_classes)
    variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *info.image_shape)), train=False)
    checkpoint.save_teacher(
        directory,
        variables,
        arch=arch,
        num_classes=info.num_classes,
        dataset=info.name,
        image_shape=tuple(info.image_shape),
    )
    return directory
