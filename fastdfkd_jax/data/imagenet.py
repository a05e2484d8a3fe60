"""ImageNet (ILSVRC 2012): 1000 classes, 1,281,167 train / 50,000 validation images, streamed.

The whole set does not fit in memory, so it is read as an example source
(:mod:`fastdfkd_jax.data.streaming`): ``open_split('imagenet2012', split)`` returns random access to
examples ``{'image': uint8 [224, 224, 3], 'label': int}`` in the torchvision reference's evaluation
view (``Resize(256)`` of the shorter side, bilinear with PIL's antialiasing, then
``CenterCrop(224)``), and ``iterate_batches`` turns it into padded batches. Our ``'test'`` split is
ImageNet's validation set (the test set has no labels). Labels are the indices of the sorted WordNet
ids, the order of torchvision's and TFDS's pretrained classifiers. Two sources:

1. ``imagenet2012``: TFDS's ``imagenet2012`` dataset, prepared once (array_record files) and read
   through ``tfds.data_source`` (no TensorFlow). ImageNet needs a manual download (register at
   https://image-net.org/download-images): put ``ILSVRC2012_img_train.tar`` and
   ``ILSVRC2012_img_val.tar`` in ``<data_dir>/downloads/manual/`` (or give ``--manual_dir``) and
   run ``python scripts/prepare_data.py --dataset=imagenet2012 [--data_dir=DIR]``. That uses a
   subclass of TFDS's builder whose split generators read the tars with ``tarfile`` and fix the 22
   CMYK images and the one PNG with PIL instead of TensorFlow (JPEG quality 100, as TFDS); keys,
   features and hence the example order are the stock builder's. With TensorFlow installed,
   ``tfds.builder('imagenet2012').download_and_prepare(file_format='array_record')`` gives the same
   dataset.
2. ``imagenet2012_folder``: the standard folder layout (torchvision's ``ImageFolder``):
   ``<data_dir>/train/<wnid>/*.JPEG`` and ``<data_dir>/val/<wnid>/*.JPEG``, exactly the 1000
   WordNet ids as folder names (the validation images moved into class folders, e.g. by PyTorch's
   ImageNet example's ``valprep.sh``); ``data_dir`` defaults to ``<$FASTDFKD_DATA_DIR or TFDS's
   data dir>/ILSVRC2012``.

``open_tfds`` and ``open_folder`` take other ``resize``/``crop`` sizes for smaller evaluation views
(e.g. quick CPU runs); the registry uses torchvision's. Training-side augmentation happens on
device (:func:`fastdfkd_jax.data.augment.augment_resized_crop` with the scales below).
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from collections.abc import Sequence

import numpy as np
from absl import logging

from fastdfkd_jax.data import augment, base, pil_ops, streaming, tfds_arrays

TFDS_NAME = "imagenet2012"
# Per-channel mean/std of ImageNet, as torchvision and the original code normalize.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's evaluation view: Resize(256) then CenterCrop(224).
RESIZE_SIZE = 256
CROP_SIZE = 224
# The original's ImageNet augmentation (zju-vipa/Fast-Datafree): synthesis crops with
# RandomResizedCrop(224, scale=(0.75, 1)) (fast_meta_imagenet.py), while KD on the image pool uses
# the dataset's train transform, RandomResizedCrop(224) with torchvision's default scale.
SYNTHESIS_CROP_SCALE = (0.75, 1.0)
KD_CROP_SCALE = augment.DEFAULT_SCALE

INFO = base.DatasetInfo(
    name="imagenet2012",
    image_shape=(CROP_SIZE, CROP_SIZE, 3),
    num_classes=1000,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    train_size=1_281_167,
    test_size=50_000,
)
FOLDER_INFO = dataclasses.replace(INFO, name="imagenet2012_folder")

# Our split names -> TFDS's and the folder layout's.
TFDS_SPLITS = {"train": "train", "test": "validation"}
FOLDER_SPLITS = {"train": "train", "test": "val"}
# Default folder of the folder layout under the data directory (the original code's name).
FOLDER_DEFAULT_DIR = "ILSVRC2012"
# torchvision's IMG_EXTENSIONS (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# The manual-download archives TFDS documents.
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
# TFDS re-encodes its CMYK and PNG images as JPEG at this quality.
FIXED_JPEG_QUALITY = 100

NOT_FOUND_MESSAGE = (
    "imagenet2012 is not prepared in {data_dir}. ImageNet needs a manual download: register at "
    "https://image-net.org/download-images, put " + TRAIN_TAR + " and " + VAL_TAR + " in "
    "{data_dir}/downloads/manual/, then run `python scripts/prepare_data.py "
    "--dataset=imagenet2012 --data_dir={data_dir}` (or, with TensorFlow, "
    "`tfds.builder('imagenet2012', data_dir='{data_dir}').download_and_prepare("
    "file_format='array_record')`). With the images in class folders instead, use the dataset "
    "imagenet2012_folder."
)


def wordnet_ids() -> list[str]:
    """The 1000 WordNet ids in label order (sorted; TFDS's ``labels.txt``)."""
    import tensorflow_datasets as tfds

    path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
    return path.read_text().split()


def preprocess_for_eval(image, *, resize: int = RESIZE_SIZE, crop: int = CROP_SIZE) -> np.ndarray:
    """The evaluation view: ``Resize(resize)`` -> ``CenterCrop(crop)`` of an RGB image.

    Args:
      image: a PIL image (any mode; converted to RGB as torchvision's loader does) or a uint8
        array ``[H, W, 3]``.
      resize: the shorter side after resizing.
      crop: the side of the central square crop.

    Returns:
      uint8 ``[crop, crop, 3]``.

    """
    import PIL.Image

    if isinstance(image, np.ndarray):
        image = PIL.Image.fromarray(image)
    image = image.convert("RGB")
    return np.asarray(pil_ops.center_crop(pil_ops.resize_shorter_side(image, resize), crop))


def open_tfds(
    split: str,
    data_dir: str | None = None,
    *,
    resize: int = RESIZE_SIZE,
    crop: int = CROP_SIZE,
) -> streaming.ExampleSource:
    """TFDS's prepared ``imagenet2012`` split in the evaluation view (see the module docstring).

    Args:
      split: ``'train'`` or ``'test'`` (ImageNet's validation set).
      data_dir: TFDS data directory (default: ``$FASTDFKD_DATA_DIR``, else TFDS's default).
      resize: shorter side after resizing.
      crop: side of the central crop (the examples' size).

    Raises:
      DatasetNotFoundError: the dataset is not prepared in the data directory; the message says
        how to prepare it.

    """
    base.check_split(split)
    data_dir = base.resolve_data_dir(data_dir)
    source = tfds_arrays.open_data_source(
        TFDS_NAME,
        TFDS_SPLITS[split],
        data_dir,
        not_found_message=NOT_FOUND_MESSAGE.format(data_dir=data_dir),
    )

    def example(raw: streaming.Example) -> streaming.Example:
        image = preprocess_for_eval(raw["image"], resize=resize, crop=crop)
        return {"image": image, "label": int(raw["label"])}

    return streaming.MappedSource(source, example)


class ImageFolderSource:
    """torchvision's ``ImageFolder`` layout as an example source, in the evaluation view.

    Classes are the sub-folders of ``root`` sorted by name (label = position); examples are the
    files with an image extension under each class folder (recursively), sorted by path.

    Args:
      root: the split's folder.
      classes: the class folder names required, in label order (None: whatever is there).
      resize: shorter side after resizing.
      crop: side of the central crop (the examples' size).

    Raises:
      DatasetNotFoundError: ``root`` is missing or holds no class folders.
      ValueError: the class folders differ from ``classes`` (naming the first missing and
        unexpected ones), or a class folder holds no image.

    """

    def __init__(
        self,
        root: str,
        *,
        classes: Sequence[str] | None = None,
        resize: int = RESIZE_SIZE,
        crop: int = CROP_SIZE,
    ):
        self._resize, self._crop = resize, crop
        if not os.path.isdir(root):
            raise base.DatasetNotFoundError(
                f"{root} is not a directory; expected class folders of images there "
                "(<data_dir>/train/<class>/*.JPEG and <data_dir>/val/<class>/*.JPEG)."
            )
        found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        if not found:
            raise base.DatasetNotFoundError(f"{root} holds no class folders.")
        if classes is not None and found != list(classes):
            missing = sorted(set(classes) - set(found))
            unexpected = sorted(set(found) - set(classes))
            raise ValueError(
                f"{root} must hold exactly the {len(classes)} class folders {list(classes[:3])}...;"
                f" found {len(found)}, missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
        self.classes = found
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(found):
            files = sorted(
                os.path.join(dirpath, file)
                for dirpath, _, files in os.walk(os.path.join(root, name), followlinks=True)
                for file in files
                if file.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not files:
                raise ValueError(f"Class folder {os.path.join(root, name)} holds no image.")
            self.samples += [(path, label) for path in files]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> streaming.Example:
        import PIL.Image

        path, label = self.samples[index]
        with PIL.Image.open(path) as image:
            image = preprocess_for_eval(image, resize=self._resize, crop=self._crop)
            return {"image": image, "label": label}


def open_folder(
    split: str,
    data_dir: str | None = None,
    *,
    resize: int = RESIZE_SIZE,
    crop: int = CROP_SIZE,
) -> streaming.ExampleSource:
    """``<data_dir>/{train,val}/<wnid>/*`` with exactly the 1000 WordNet ids, evaluation view.

    ``data_dir`` is the folder holding ``train/`` and ``val/``; by default
    ``<$FASTDFKD_DATA_DIR or TFDS's data dir>/ILSVRC2012`` (the original code's location).
    ``resize`` and ``crop`` as for :func:`open_tfds`.
    """
    base.check_split(split)
    root = data_dir or os.path.join(base.resolve_data_dir(None), FOLDER_DEFAULT_DIR)
    return ImageFolderSource(
        os.path.join(root, FOLDER_SPLITS[split]), classes=wordnet_ids(), resize=resize, crop=crop
    )


def _rgb_jpeg(data: bytes) -> bytes:
    """Re-encode an image (CMYK JPEG or PNG) as an RGB JPEG, as TFDS does with TensorFlow."""
    import PIL.Image

    with PIL.Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=FIXED_JPEG_QUALITY)
    return out.getvalue()


def _builder_class():
    # Defined lazily: importing TFDS's ImageNet builder takes about a second.
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as stock

    fixed = set(stock.CMYK_IMAGES) | set(stock.PNG_IMAGES)

    class ArchiveImagenet2012(stock.Builder, skip_registration=True):
        """TFDS's ImageNet builder reading the manual tars with `tarfile`, PIL for the fixes."""

        def _split_generators(self, dl_manager):
            manual_dir = os.fspath(dl_manager.manual_dir)
            paths = {"train": os.path.join(manual_dir, TRAIN_TAR)}
            paths["validation"] = os.path.join(manual_dir, VAL_TAR)
            generators = {}
            if os.path.exists(paths["train"]):
                generators["train"] = self._train_examples(paths["train"])
            if os.path.exists(paths["validation"]):
                generators["validation"] = self._validation_examples(paths["validation"])
            if not generators:
                raise base.DatasetNotFoundError(
                    f"Neither {paths['train']} nor {paths['validation']} exists (ImageNet's "
                    "manual download)."
                )
            return generators

        def _record(self, file_name, data, label):
            if file_name in fixed:
                data = _rgb_jpeg(data)
            return file_name, {"file_name": file_name, "image": data, "label": label}

        def _train_examples(self, path):
            # The train tar holds one tar per class, named `<wnid>.tar`; streamed (about 140 GB).
            with tarfile.open(path, "r|") as outer:
                for member in outer:
                    wnid = os.path.splitext(os.path.basename(member.name))[0]
                    inner_bytes = io.BytesIO(outer.extractfile(member).read())
                    with tarfile.open(fileobj=inner_bytes, mode="r|") as inner:
                        for image in inner:
                            name = os.path.basename(image.name)
                            yield self._record(name, inner.extractfile(image).read(), wnid)

        def _validation_examples(self, path):
            # TFDS's validation labels follow the sorted image names.
            labels_path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
            labels = labels_path.read_text().strip().splitlines()
            with tarfile.open(path, "r:") as tar:
                names = sorted(os.path.basename(n) for n in tar.getnames())
            by_name = dict(zip(names, labels, strict=False))
            with tarfile.open(path, "r|") as tar:
                for member in tar:
                    name = os.path.basename(member.name)
                    yield self._record(name, tar.extractfile(member).read(), by_name[name])

    ArchiveImagenet2012.name = TFDS_NAME
    return ArchiveImagenet2012


def prepare(data_dir: str | None = None, *, manual_dir: str | None = None) -> str:
    """Prepare TFDS's ``imagenet2012`` from the manual-download tars, without TensorFlow.

    Args:
      data_dir: TFDS data directory (default: ``$FASTDFKD_DATA_DIR``, else TFDS's default).
      manual_dir: folder of ``ILSVRC2012_img_train.tar`` / ``ILSVRC2012_img_val.tar`` (default:
        ``<data_dir>/downloads/manual``); a missing one leaves its split out.

    Returns:
      The prepared dataset's versioned directory.

    """
    import tensorflow_datasets as tfds

    data_dir = base.resolve_data_dir(data_dir)
    builder = _builder_class()(data_dir=data_dir)
    if not builder.is_prepared():
        logging.info("Preparing imagenet2012 in %s from %s.", data_dir, manual_dir or "manual/")
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
        )
    return os.fspath(builder.data_dir)
