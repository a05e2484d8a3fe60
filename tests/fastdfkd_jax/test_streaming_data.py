"""Tests of the streamed datasets: ImageNet (TFDS and folders), NYUv2, batching, PIL transforms."""

import io
import os
import tarfile

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from fastdfkd_jax import data
from fastdfkd_jax.data import base, imagenet, nyuv2, pil_ops, registry, streaming

# --- torchvision's resize and crop -----------------------------------------------------------


def _coordinate_image(width, height):
    """RGB image whose red channel is x mod 256 and green channel y mod 256."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    rgb = np.stack([x % 256, y % 256, np.zeros_like(x)], -1).astype(np.uint8)
    return PIL.Image.fromarray(rgb)


def test_resize_shorter_side_sizes():
    assert pil_ops.resize_shorter_side(_coordinate_image(500, 375), 256).size == (341, 256)
    assert pil_ops.resize_shorter_side(_coordinate_image(375, 500), 256).size == (256, 341)
    # torchvision truncates the long side: 256 * 640 / 480 = 341.33.
    assert pil_ops.resize_shorter_side(_coordinate_image(640, 480), 256).size == (341, 256)
    same = _coordinate_image(300, 256)
    assert pil_ops.resize_shorter_side(same, 256) is same


def test_center_crop_offsets_round_half_to_even():
    # (341 - 224) / 2 = 58.5 rounds to 58 (Python's round, as torchvision); (256 - 224) / 2 = 16.
    crop = np.asarray(pil_ops.center_crop(_coordinate_image(341, 256), 224))
    assert crop.shape == (224, 224, 3)
    assert tuple(crop[0, 0, :2]) == (58, 16)
    assert tuple(crop[-1, -1, :2]) == ((58 + 223) % 256, 16 + 223)
    with pytest.raises(ValueError, match="center_crop"):
        pil_ops.center_crop(_coordinate_image(100, 300), 224)


def test_preprocess_for_eval():
    out = imagenet.preprocess_for_eval(_coordinate_image(500, 375))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # A grayscale image becomes RGB (equal channels), like torchvision's loader.
    gray = PIL.Image.fromarray(np.full((300, 260), 77, np.uint8))
    out = imagenet.preprocess_for_eval(gray)
    assert out.shape == (224, 224, 3) and (out == 77).all()
    # Arrays are accepted and give the same pixels as the PIL image.
    image = _coordinate_image(260, 300)
    np.testing.assert_array_equal(
        imagenet.preprocess_for_eval(np.asarray(image)), imagenet.preprocess_for_eval(image)
    )


# --- iterate_batches --------------------------------------------------------------------------


def _array_source(n=5):
    images = np.arange(n * 2 * 2 * 1, dtype=np.uint8).reshape(n, 2, 2, 1)
    return streaming.ArraySource({"image": images, "label": np.arange(n) + 10})


@pytest.mark.parametrize("num_threads", [1, 4])
def test_iterate_batches_pads_and_masks(num_threads):
    source = _array_source()
    batches = list(streaming.iterate_batches(source, 2, num_threads=num_threads))
    assert len(batches) == 3
    assert all(b["image"].shape == (2, 2, 2, 1) and b["image"].dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(
        np.concatenate([b["label"] for b in batches]), [10, 11, 12, 13, 14, 0]
    )
    np.testing.assert_array_equal(batches[-1]["mask"], [True, False])
    np.testing.assert_allclose(batches[1]["image"][0], source[2]["image"] / 255.0)
    assert batches[0]["label"].dtype == np.int32


def test_iterate_batches_indices_and_pad_to():
    source = _array_source()
    batches = list(streaming.iterate_batches(source, 2, indices=[4, 1, 3], pad_to=7))
    # ceil(7 / 2) = 4 batches, the last two with masked rows only.
    assert len(batches) == 4
    np.testing.assert_array_equal(batches[0]["label"], [14, 11])
    np.testing.assert_array_equal([b["mask"].sum() for b in batches], [2, 1, 0, 0])
    assert not batches[-1]["image"].any()
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(streaming.iterate_batches(source, 0))
    with pytest.raises(ValueError, match="at least one example"):
        next(streaming.iterate_batches(source, 2, indices=[]))


def test_open_split_of_an_in_memory_dataset():
    source = data.open_split("digits", "test")
    split = data.load_split("digits", "test")
    assert len(source) == len(split["label"])
    batch = next(data.iterate_batches(source, 4))
    np.testing.assert_array_equal(batch["image"], split["image"][:4])


def test_registry_entries_need_one_loader():
    with pytest.raises(ValueError, match="exactly one of load and open"):
        registry.DatasetEntry(imagenet.INFO)


def test_info_of_streamed_datasets():
    info = data.get_info("imagenet2012")
    assert info.image_shape == (224, 224, 3) and info.num_classes == 1000
    assert (info.train_size, info.test_size) == (1_281_167, 50_000)
    info = data.get_info("nyuv2")
    assert info.task == "segmentation" and info.image_shape == (128, 128, 3)
    assert (info.train_size, info.test_size, info.num_classes) == (795, 654, 13)
    with pytest.raises(ValueError, match="task must be one of"):
        base.DatasetInfo("x", (1, 1, 1), 2, (0.5,), (0.5,), 1, 1, task="detection")


# --- ImageNet through TFDS --------------------------------------------------------------------


def test_imagenet_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        source = data.open_split("imagenet2012", "test", tmp_path)
        assert len(source) == 5
        batches = list(data.iterate_batches(source, 4))
        # A smaller evaluation view, e.g. for quick CPU runs.
        small = imagenet.open_tfds("test", str(tmp_path), resize=40, crop=32)
        assert small[0]["image"].shape == (32, 32, 3)
    assert [b["image"].shape for b in batches] == [(4, 224, 224, 3)] * 2
    assert batches[1]["mask"].tolist() == [True, False, False, False]
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    assert ((0 <= labels) & (labels < 1000)).all()
    images = np.concatenate([b["image"] for b in batches])
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_imagenet_is_not_loaded_whole_and_says_how_to_prepare(tmp_path):
    with pytest.raises(ValueError, match=r"open_split\('imagenet2012'"):
        data.load_split("imagenet2012", "test", tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match="manual download.*ILSVRC2012_img_val.tar"):
        data.open_split("imagenet2012", "test", tmp_path)


def _jpeg(rng, height, width, mode="RGB"):
    image = PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.convert(mode).save(out, "JPEG")
    return out.getvalue()


def _add(tar, name, content):
    member = tarfile.TarInfo(name)
    member.size = len(content)
    tar.addfile(member, io.BytesIO(content))


def test_imagenet_prepared_from_manual_tars_without_tensorflow(tmp_path):
    """The tars in the official layout, one CMYK image among them, prepare and read back."""
    rng = np.random.default_rng(0)
    wnids = imagenet.wordnet_ids()
    cmyk = "n01739381_1309.JPEG"  # one of TFDS's CMYK images
    files = {}
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / imagenet.TRAIN_TAR, "w") as outer:
        for wnid in (wnids[0], "n01739381"):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                names = [f"{wnid}_{k}.JPEG" for k in range(2)]
                names[1] = cmyk if wnid == "n01739381" else names[1]
                for name in names:
                    files[name] = (_jpeg(rng, 40, 60, "CMYK" if name == cmyk else "RGB"), wnid)
                    _add(tar, name, files[name][0])
            _add(outer, f"{wnid}.tar", inner.getvalue())
    # Validation labels follow the sorted file names (TFDS's validation_labels.txt).
    val_labels = ["n01751748", "n09193705", "n02105855"]
    with tarfile.open(manual / imagenet.VAL_TAR, "w") as tar:
        for k, wnid in enumerate(val_labels, start=1):
            name = f"ILSVRC2012_val_{k:08d}.JPEG"
            files[name] = (_jpeg(rng, 300, 257), wnid)
            _add(tar, name, files[name][0])

    data_dir = str(tmp_path / "tfds")
    imagenet.prepare(data_dir, manual_dir=str(manual))
    for split, size in (("train", 4), ("test", 3)):
        raw = tfds.data_source("imagenet2012", split=imagenet.TFDS_SPLITS[split], data_dir=data_dir)
        source = data.open_split("imagenet2012", split, data_dir)
        assert len(source) == len(raw) == size
        for i in range(size):
            name = raw[i]["file_name"].decode()
            content, wnid = files[name]
            assert source[i]["label"] == wnids.index(wnid)
            assert raw[i]["image"].shape[-1] == 3
            if name != cmyk:
                expected = imagenet.preprocess_for_eval(PIL.Image.open(io.BytesIO(content)))
                np.testing.assert_array_equal(source[i]["image"], expected)


# --- ImageNet class folders -------------------------------------------------------------------


def _image_folder(root, classes, per_class=2, seed=0):
    """class folders of JPEGs (one grayscale, one in a sub-folder) and a non-image file."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        (folder / "sub").mkdir(parents=True)
        for k in range(per_class):
            path = folder / ("sub" if k else "") / f"img{k}.JPEG"
            mode = "L" if (c, k) == (0, 0) else "RGB"
            path.write_bytes(_jpeg(rng, 230 + 13 * k, 250 + 7 * c, mode))
        (folder / "notes.txt").write_text("not an image")


def test_image_folder_source(tmp_path):
    classes = ["n01440764", "n01443537", "n01484850"]
    _image_folder(tmp_path / "val", classes[::-1])
    source = imagenet.ImageFolderSource(str(tmp_path / "val"))
    assert source.classes == classes
    assert len(source) == 6
    assert [source[i]["label"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    path, _ = source.samples[1]
    assert path.endswith(os.path.join("n01440764", "sub", "img1.JPEG"))
    np.testing.assert_array_equal(
        source[1]["image"], imagenet.preprocess_for_eval(PIL.Image.open(path))
    )
    assert source[0]["image"].shape == (224, 224, 3)  # the grayscale one, as RGB
    small = imagenet.ImageFolderSource(str(tmp_path / "val"), resize=40, crop=32)
    np.testing.assert_array_equal(
        small[1]["image"], imagenet.preprocess_for_eval(PIL.Image.open(path), resize=40, crop=32)
    )
    batch = next(data.iterate_batches(source, 6))
    np.testing.assert_array_equal(batch["label"], [0, 0, 1, 1, 2, 2])


def test_image_folder_bad_layouts(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="is not a directory"):
        imagenet.ImageFolderSource(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(data.DatasetNotFoundError, match="holds no class folders"):
        imagenet.ImageFolderSource(str(tmp_path / "flat"))
    _image_folder(tmp_path / "ds" / "val", ["n01440764", "n01443537", "n01484850"])
    with pytest.raises(ValueError, match="exactly the 1000 class folders.*found 3.*missing"):
        data.open_split("imagenet2012_folder", "test", tmp_path / "ds")
    with pytest.raises(data.DatasetNotFoundError, match=os.path.join("ds", "train")):
        data.open_split("imagenet2012_folder", "train", tmp_path / "ds")
    (tmp_path / "ds" / "val" / "n09999999").mkdir()
    with pytest.raises(ValueError, match="n09999999 holds no image"):
        imagenet.ImageFolderSource(str(tmp_path / "ds" / "val"))


# --- NYUv2 ------------------------------------------------------------------------------------


def _nyu_pair(rng, label_max=13, size=nyuv2.NYUV2_SIZE):
    h, w = size
    # Smooth images keep the PNGs small.
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, rng.integers(256))], -1)
    label = rng.integers(0, label_max, (h // 40, w // 40)).repeat(40, 0).repeat(40, 1)
    label[:40, :40] = base.IGNORE_LABEL
    return image.astype(np.uint8), label.astype(np.uint8)


def _nyu_dir(root, counts=(("train", 2), ("test", 1)), label_dir="seg13", label_max=13):
    rng = np.random.default_rng(0)
    pairs = {}
    for split, n in counts:
        (root / "image" / split).mkdir(parents=True, exist_ok=True)
        (root / label_dir / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            name = f"{2 * k + 3:05d}.png"
            image, label = _nyu_pair(rng, label_max)
            PIL.Image.fromarray(image).save(root / "image" / split / name)
            PIL.Image.fromarray(label).save(root / label_dir / split / name)
            pairs[split, name] = (image, label)
    return pairs


def test_nyuv2_layout_is_read_and_resized(tmp_path):
    pairs = _nyu_dir(tmp_path)
    source = data.open_split("nyuv2", "train", tmp_path)
    assert len(source) == 2
    example = source[1]
    assert example["image"].shape == (256, 341, 3) and example["image"].dtype == np.uint8
    assert example["label"].shape == (256, 341)
    image, label = pairs["train", "00005.png"]
    np.testing.assert_array_equal(
        example["label"],
        np.asarray(PIL.Image.fromarray(label).resize((341, 256), PIL.Image.NEAREST)),
    )
    np.testing.assert_array_equal(
        example["image"],
        np.asarray(PIL.Image.fromarray(image).resize((341, 256), PIL.Image.BILINEAR)),
    )
    assert set(np.unique(example["label"])) <= set(range(13)) | {255}
    batch = next(data.iterate_batches(data.open_split("nyuv2", "test", tmp_path), 2))
    assert batch["image"].shape == (2, 256, 341, 3) and batch["label"].shape == (2, 256, 341)
    assert batch["label"].dtype == np.int32 and batch["mask"].tolist() == [True, False]
    with pytest.raises(ValueError, match=r"open_split\('nyuv2'"):
        data.load_split("nyuv2", "train", tmp_path)


def test_nyuv2_13_class_mapping():
    # NYU40 classes (0-based) -> the 13 classes, known pairs of class13Mapping.mat.
    known = {0: "wall", 1: "floor", 3: "bed", 4: "chair", 5: "sofa", 6: "table", 8: "window",
             10: "picture", 21: "ceiling", 22: "books", 24: "tv", 39: "objects"}  # fmt: skip
    for class40, name in known.items():
        assert nyuv2.CLASS_NAMES[nyuv2.CLASS40_TO_13[class40]] == name
    assert set(nyuv2.CLASS40_TO_13) == set(range(13))


def test_nyuv2_seg40_is_mapped_to_13_classes(tmp_path):
    pairs = _nyu_dir(tmp_path, counts=(("test", 1),), label_dir="seg40", label_max=40)
    _, label40 = pairs["test", "00003.png"]
    label = data.open_split("nyuv2", "test", tmp_path)[0]["label"]
    resized = np.asarray(PIL.Image.fromarray(label40).resize((341, 256), PIL.Image.NEAREST))
    expected = np.where(resized == 255, 255, nyuv2.CLASS40_TO_13[np.minimum(resized, 39)])
    np.testing.assert_array_equal(label, expected)


def test_nyuv2_bad_inputs(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"image.train.*does not exist"):
        data.open_split("nyuv2", "train", tmp_path)
    (tmp_path / "image" / "train").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="seg13 or seg40"):
        data.open_split("nyuv2", "train", tmp_path)
    _nyu_dir(tmp_path, counts=(("train", 1),))
    rng = np.random.default_rng(1)
    image, label = _nyu_pair(rng)
    bad = {
        "wrong size": (image[:-8], label[:-8], "expected an RGB image of 480x640"),
        "gray image": (image[..., 0], label, "expected an RGB image.*mode L"),
        "label range": (image, np.where(label == 3, 13, label), "label value 13 outside 0..12"),
    }
    for name, (bad_image, bad_label, message) in bad.items():
        root = tmp_path / name.replace(" ", "_")
        _nyu_dir(root, counts=(("train", 1),))
        PIL.Image.fromarray(bad_image).save(root / "image" / "train" / "00009.png")
        PIL.Image.fromarray(bad_label).save(root / "seg13" / "train" / "00009.png")
        with pytest.raises(ValueError, match=message):
            data.open_split("nyuv2", "train", root)
    PIL.Image.fromarray(image).save(tmp_path / "image" / "train" / "00011.png")
    with pytest.raises(ValueError, match="lack a label map.*00011.png"):
        data.open_split("nyuv2", "train", tmp_path)
