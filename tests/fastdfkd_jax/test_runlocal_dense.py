"""End to end: the ImageNet and NYUv2 `runlocal` variants (no data, no teacher: generated test
data and a random tiny teacher) through the entry point's `main.run`, on one device as they are
and on 8 simulated devices; bad input on the run path raises before any compute.
"""

import json
import math
import os

import numpy as np
import PIL.Image
import pytest

from fastdfkd_jax import data, main, run_data, smoke
from fastdfkd_jax import metric_files as metrics
from tests.conftest import load_config

RUNLOCAL = ["dfkd_imagenet.py:runlocal", "dfkd_nyuv2.py:runlocal"]
# What each task scores (stream_eval.METRICS).
SCORES = {"dfkd_imagenet.py:runlocal": ("accuracy",),
          "dfkd_nyuv2.py:runlocal": ("mean_iou", "pixel_accuracy")}  # fmt: skip
DEVICES = 8


def check_run(workdir, spec, config):
    summary = main.run(config, workdir)
    assert summary["smoke_test"] is True
    for who in ("teacher", "student"):
        for name in SCORES[spec]:
            value = summary[f"{who}_test_{name}"]
            assert 0.0 <= value <= 1.0, (who, name, value)
    assert summary["synthesis_calls"] == config.epochs
    records = metrics.read_metrics(workdir)
    assert [r["epoch"] for r in records] == list(range(1, config.epochs + 1))
    assert all(math.isfinite(v) for r in records for v in r.values())
    assert "kd_loss" in records[-1] and "kd_loss" not in records[0]  # after the warmup epoch
    assert os.path.exists(os.path.join(workdir, "samples_0002.png"))
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["config"]["smoke_test"] is True
    return summary, records


@pytest.mark.slow
@pytest.mark.parametrize("spec", RUNLOCAL)
def test_runlocal_end_to_end_on_one_and_on_8_devices(spec, tmp_path):
    # As the command `python -m fastdfkd_jax.main --config=configs/SPEC --workdir=DIR` runs it.
    config = load_config(spec)
    _, records = check_run(str(tmp_path / "one"), spec, config)
    if spec.startswith("dfkd_imagenet"):
        assert [r["latent_reset"] for r in records] == [0.0, 1.0]  # reset_every=2
    # The sharded path: every batch split over 8 simulated devices.
    config = load_config(spec)
    config.mesh.data = DEVICES
    config.synthesis.batch_size = config.kd.batch_size = config.eval_batch_size = DEVICES
    config.kd.optimizer.reference_batch_size = DEVICES
    config.pool.capacity = 2 * DEVICES
    check_run(str(tmp_path / "eight"), spec, config)


# -- bad input on the run path ---------------------------------------------------------------------
def nyuv2_config(tmp_path, data_dir):
    """The NYUv2 runlocal variant with real data from `data_dir` and a saved tiny teacher."""
    config = load_config("dfkd_nyuv2.py:runlocal")
    config.smoke_test = False
    info = run_data.dataset_info(config)
    config.teacher.checkpoint = smoke.init_teacher("deeplabv3_tiny", info, str(tmp_path), 0)
    config.dataset.data_dir = str(data_dir)
    return config


def test_a_data_dir_without_the_layout_fails_before_compute(tmp_path):
    config = nyuv2_config(tmp_path, tmp_path / "empty")
    with pytest.raises(data.DatasetNotFoundError, match=r"empty/image/test \(the test images\)"):
        main.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_bad_images_or_labels_fail_before_compute(tmp_path):
    root = smoke.write_nyuv2_layout(str(tmp_path / "nyu"), "test", 2)
    label_path = os.path.join(root, "seg13", "test", "00001.png")
    label = np.asarray(PIL.Image.open(label_path)).copy()
    label[100, 100] = 13
    PIL.Image.fromarray(label).save(label_path)
    config = nyuv2_config(tmp_path, root)
    with pytest.raises(ValueError, match=r"00001.png: label value 13 outside 0..12"):
        main.run(config, str(tmp_path / "run"))
    image_path = os.path.join(root, "image", "test", "00000.png")
    image = np.asarray(PIL.Image.open(image_path))
    PIL.Image.fromarray(image[..., 0]).save(image_path)  # one channel
    PIL.Image.fromarray(np.zeros((480, 640), np.uint8)).save(label_path)
    with pytest.raises(ValueError, match=r"00000.png: expected an RGB image of 480x640"):
        main.run(config, str(tmp_path / "run"))


def test_bad_run_settings_are_refused_by_validate():
    config = load_config("dfkd_nyuv2.py:runlocal")
    config.kd.augment.kind = "jitter"
    with pytest.raises(ValueError, match=r"Unknown kd.augment.kind 'jitter'"):
        main.run(config, "/nonexistent")
    config = load_config("dfkd_cifar.py:runlocal")
    config.smoke_test = True
    with pytest.raises(ValueError, match=r"smoke_test .* not 'cifar10'"):
        main.run(config, "/nonexistent")
    config = load_config("dfkd_cifar.py:runlocal")
    config.dataset.image_size = 64
    with pytest.raises(ValueError, match=r"cifar10 has a fixed size"):
        main.run(config, "/nonexistent")
    config = load_config("dfkd_imagenet.py:runlocal")
    config.synthesis.meta_latent.reset_every = -1
    with pytest.raises(ValueError, match=r"synthesis.meta_latent.reset_every=-1 is out of range"):
        main.run(config, "/nonexistent")
