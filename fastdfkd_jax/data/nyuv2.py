"""NYUv2 labeled set for semantic segmentation: 795 train / 654 test RGB images, 13 classes.

Layout read (the one the DFKD literature uses: the original FastDFKD code's
``datafree/datasets/nyu.py`` and CMI read it, and VainF/nyuv2-python-toolkit's
``extract_nyuv2.py --mat nyu_depth_v2_labeled.mat`` writes it from the official
``nyu_depth_v2_labeled.mat`` and ``splits.mat``)::

    <data_dir>/image/train/00003.png ...   RGB, 480x640
    <data_dir>/image/test/00001.png ...
    <data_dir>/seg13/train/00003.png ...   uint8 label maps, 480x640, same file names:
    <data_dir>/seg13/test/00001.png ...    0..12 for the classes, 255 for unlabeled pixels

Instead of ``seg13`` the toolkit's ``seg40`` (0..39, 255) is accepted too and mapped to the 13
classes with ``CLASS40_TO_13``. ``data_dir`` defaults to ``<$FASTDFKD_DATA_DIR or TFDS's data
dir>/NYUv2`` (the original code's location).

The 13-class mapping is the toolkit's, from ankurhanda/nyuv2-meta-data: the 894 raw NYU labels go
to the 40 classes of Gupta et al. (``classMapping40.mat``), those to 13 (``class13Mapping.mat``,
reproduced in ``CLASS40_TO_13``), and raw label 0 (unlabeled) becomes 255 (``0 - 1`` as uint8).

Preprocessing as the original code (``registry.py``): every image and label map is resized so the
shorter side is 256 (``Resize(256)``: bilinear for images, nearest for labels), giving 256x341;
training then crops 128x128 at random with flips (done on device), so ``INFO.image_shape`` is the
128x128 crop, and evaluation uses the whole 256x341 images. Mean and std are the original's (0.5).
The split is small (about 0.2 GB as uint8 at 256x341), so it is decoded, checked and held in
memory when opened: a file of the wrong size, channel count or label range raises there, before
any training.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np
import PIL.Image
from absl import logging

from fastdfkd_jax.data import base, pil_ops, streaming

# Size of every NYUv2 image and label map (height, width).
NYUV2_SIZE = (480, 640)
# The original code's Resize(256) (shorter side) and RandomCrop(128).
RESIZE_SIZE = 256
CROP_SIZE = 128
# The original code's normalization for nyuv2 (registry.py NORMALIZE_DICT).
NYUV2_MEAN = (0.5, 0.5, 0.5)
NYUV2_STD = (0.5, 0.5, 0.5)
DEFAULT_DIR = "NYUv2"
IMAGE_DIR = "image"
LABEL_DIRS = ("seg13", "seg40")

# Label order of the 13 classes (class13Mapping.mat's classNames).
CLASS_NAMES = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
# class13Mapping.mat's labels13, made 0-based: class40 c (0..39) -> class13 CLASS40_TO_13[c].
CLASS40_TO_13 = np.array(
    [11, 4, 5, 0, 3, 8, 9, 11, 12, 5, 7, 5, 12, 9, 5, 12, 5, 6, 6, 4]
    + [6, 2, 1, 5, 10, 6, 6, 6, 6, 6, 6, 5, 6, 6, 6, 6, 6, 6, 5, 6],
    dtype=np.uint8,
)
NUM_CLASSES = {"seg13": len(CLASS_NAMES), "seg40": len(CLASS40_TO_13)}
# Every uint8 value of a seg40 map -> its 13-class label (IGNORE_LABEL stays).
_SEG40_LOOKUP = np.full(256, base.IGNORE_LABEL, np.uint8)
_SEG40_LOOKUP[: len(CLASS40_TO_13)] = CLASS40_TO_13

INFO = base.DatasetInfo(
    name="nyuv2",
    image_shape=(CROP_SIZE, CROP_SIZE, 3),
    num_classes=len(CLASS_NAMES),
    mean=NYUV2_MEAN,
    std=NYUV2_STD,
    train_size=795,
    test_size=654,
    task="segmentation",
)

# Threads decoding PNGs (PIL releases the GIL).
_NUM_THREADS = 8


def _check_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise base.DatasetNotFoundError(
            f"NYUv2: {path} ({what}) does not exist. Expected "
            "<data_dir>/image/{train,test}/*.png and <data_dir>/seg13/{train,test}/*.png, as "
            "VainF/nyuv2-python-toolkit's extract_nyuv2.py writes them from "
            "nyu_depth_v2_labeled.mat."
        )


def _read_pair(image_path: str, label_path: str, label_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode, check and resize one (image, label map) pair to the shorter side 256."""
    with PIL.Image.open(image_path) as image:
        image.load()
    with PIL.Image.open(label_path) as label:
        label.load()
    size = NYUV2_SIZE[::-1]  # PIL sizes are (width, height)
    if image.mode != "RGB" or image.size != size:
        raise ValueError(
            f"{image_path}: expected an RGB image of {NYUV2_SIZE[0]}x{NYUV2_SIZE[1]}, got mode "
            f"{image.mode} of {image.size[1]}x{image.size[0]}."
        )
    if label.mode not in ("L", "P") or label.size != size:
        raise ValueError(
            f"{label_path}: expected a single-channel label map of {NYUV2_SIZE[0]}x"
            f"{NYUV2_SIZE[1]}, got mode {label.mode} of {label.size[1]}x{label.size[0]}."
        )
    values = np.asarray(label)
    num_classes = NUM_CLASSES[label_dir]
    bad = (values >= num_classes) & (values != base.IGNORE_LABEL)
    if bad.any():
        raise ValueError(
            f"{label_path}: label value {int(values[bad][0])} outside 0..{num_classes - 1} "
            f"and {base.IGNORE_LABEL} ({label_dir})."
        )
    image = pil_ops.resize_shorter_side(image, RESIZE_SIZE)
    label = pil_ops.resize_shorter_side(label, RESIZE_SIZE, PIL.Image.NEAREST)
    values = np.asarray(label)
    if label_dir == "seg40":
        values = _SEG40_LOOKUP[values]
    return np.asarray(image), values.astype(np.uint8)


def load_arrays(split: str, data_dir: str) -> dict[str, np.ndarray]:
    """Decode a split: ``{'image': uint8 [N, 256, 341, 3], 'label': uint8 [N, 256, 341]}``.

    Raises:
      DatasetNotFoundError: a folder of the layout is missing.
      ValueError: no images, an image without its label map, or a file of the wrong size,
        channel count or label range (naming the file).

    """
    base.check_split(split)
    image_dir = os.path.join(data_dir, IMAGE_DIR, split)
    _check_dir(image_dir, f"the {split} images")
    label_dir = next(
        (d for d in LABEL_DIRS if os.path.isdir(os.path.join(data_dir, d, split))), LABEL_DIRS[0]
    )
    label_root = os.path.join(data_dir, label_dir, split)
    _check_dir(label_root, f"the {split} label maps, {' or '.join(LABEL_DIRS)}")
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(".png"))
    if not names:
        raise ValueError(f"NYUv2: {image_dir} holds no .png image.")
    missing = [n for n in names if not os.path.exists(os.path.join(label_root, n))]
    if missing:
        raise ValueError(f"NYUv2: {len(missing)} image(s) lack a label map in {label_root}, "
                         f"first {missing[0]}.")  # fmt: skip
    expected = INFO.split_size(split)
    if len(names) != expected:
        logging.warning("NYUv2 %s: %d images in %s, the labeled set has %d.", split, len(names),
                        image_dir, expected)  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(_NUM_THREADS) as pool:
        pairs = list(
            pool.map(
                lambda n: _read_pair(os.path.join(image_dir, n), os.path.join(label_root, n),
                                     label_dir),
                names,
            )
        )  # fmt: skip
    return {"image": np.stack([p[0] for p in pairs]), "label": np.stack([p[1] for p in pairs])}


def open_source(split: str, data_dir: str | None = None) -> streaming.ExampleSource:
    """A split as an in-memory example source (see the module docstring for the layout)."""
    root = data_dir or os.path.join(base.resolve_data_dir(None), DEFAULT_DIR)
    return streaming.ArraySource(load_arrays(split, root))
