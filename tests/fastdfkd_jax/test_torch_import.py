"""Tests of the PyTorch teacher import against PyTorch twins of every zoo classifier."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.models import (
    CLASSIFIERS,
    SEGMENTATION_MODELS,
    count_params,
    create_model,
    torch_import,
)
from fastdfkd_jax.models.torch_import import convert_state_dict
from tests.fastdfkd_jax.test_models import KNOWN_PARAMS, SEGMENTATION_PARAMS, TORCHVISION_PARAMS

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "import_torch_teacher.py")


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from fastdfkd_jax.models import torch_twins

    return torch, torch_twins


def _in_channels(arch):
    return 1 if arch.startswith(("digits", "fmnist")) else 3


def _random_twin(arch, num_classes, seed=0):
    torch, torch_twins = _torch()
    net = torch_twins.build(arch, num_classes, _in_channels(arch))
    return torch_twins.randomize_(net, torch.Generator().manual_seed(seed)).eval()


def _numpy_state_dict(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def _num_params(net):
    return sum(p.numel() for p in net.parameters())


def _flax_outputs(arch, num_classes, state_dict, x_nchw):
    """Imports `state_dict` and runs the Flax model in eval mode (jitted: faster than eager)."""
    variables = convert_state_dict(arch, num_classes, state_dict)
    model = create_model(arch, num_classes=num_classes)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
    )
    out = np.asarray(out)
    # Segmentation maps back to PyTorch's [N, classes, H, W].
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


def _twin_and_import(arch, num_classes, shape):
    """(twin's parameter count, twin's outputs, imported model's outputs) on random NCHW input."""
    torch, _ = _torch()
    net = _random_twin(arch, num_classes)
    x = np.random.RandomState(0).randn(*shape).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    return _num_params(net), expected, _flax_outputs(arch, num_classes, _numpy_state_dict(net), x)


@pytest.mark.torch
@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_logits_match_pytorch(arch):
    num_params, expected, logits = _twin_and_import(arch, 10, (2, _in_channels(arch), 32, 32))
    # Parameter counts of the twins are the known values of test_models.
    assert num_params == KNOWN_PARAMS[arch][0]
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.torch
@pytest.mark.parametrize("arch", sorted(TORCHVISION_PARAMS))
def test_imagenet_twins_have_torchvision_counts(arch):
    assert _num_params(_random_twin(arch, 1000)) == TORCHVISION_PARAMS[arch]


@pytest.mark.torch
# Every segmentation model with a PyTorch original (the tiny DeepLab of smoke runs has none).
@pytest.mark.parametrize("arch", sorted(set(SEGMENTATION_MODELS) - {"deeplabv3_tiny"}))
def test_segmentation_maps_match_pytorch(arch):
    """DeepLabV3 logits equal the twin's at an odd size (atrous branches reach the padding)."""
    num_params, expected, logits = _twin_and_import(arch, 13, (1, 3, 35, 45))
    assert num_params == SEGMENTATION_PARAMS[arch][0]
    assert logits.shape == (1, 13, 35, 45)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The segmentation map (per-pixel argmax) is the same.
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))


@pytest.mark.torch
def test_deeplab_torchvision_and_original_key_names():
    """torchvision's keys (with its aux head, dropped) and the original's nested keys import."""
    torch, torch_twins = _torch()
    from fastdfkd_jax.models import torch_twins_imagenet as twins

    generator = torch.Generator().manual_seed(1)
    plain = torch_twins.randomize_(twins.deeplabv3_resnet50(21), generator).eval()
    plain.aux_classifier = twins.FCNHead(1024, 21)
    # torchvision's published count for deeplabv3_resnet50 (with the aux head).
    assert _num_params(plain) == 42_004_074
    nested = twins.deeplabv3_resnet50(21, nested=True).eval()
    nested_keys = nested.state_dict().keys()
    assert any(k.startswith("classifier.classifier.0.convs.4.1") for k in nested_keys)
    # Same tensors under the original's names.
    nested.load_state_dict(
        {
            k.replace("classifier.", "classifier.classifier.", 1)
            if k.startswith("classifier.")
            else k: v
            for k, v in plain.state_dict().items()
            if not k.startswith("aux_classifier.")
        }
    )
    a = convert_state_dict("deeplabv3_resnet50", 21, _numpy_state_dict(plain))
    b = convert_state_dict("deeplabv3_resnet50", 21, _numpy_state_dict(nested))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert count_params(a["params"]) == SEGMENTATION_PARAMS["deeplabv3_resnet50"][1]


@pytest.mark.torch
def test_imagenet_generator_matches_pytorch():
    """The original's DeepGenerator (train-mode BN) gives the same images after import."""
    torch, torch_twins = _torch()
    from fastdfkd_jax.models import torch_twins_imagenet as twins

    overrides = {"nz": 16, "ngf": 8, "latent_size": 2}
    net = twins.TorchDeepGenerator(nz=16, ngf=8)
    assert _num_params(twins.TorchDeepGenerator()) == 592_451
    torch_twins.randomize_(net, torch.Generator().manual_seed(2)).train()
    z = np.random.RandomState(0).randn(3, 16, 2, 2).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(z)).numpy()
    variables = convert_state_dict(
        "generator_imagenet", None, _numpy_state_dict(net), overrides=overrides
    )
    assert count_params(variables["params"]) == _num_params(net)
    model = create_model("generator_imagenet", **overrides)
    images, _ = model.apply(
        variables, jnp.asarray(z.transpose(0, 2, 3, 1)), mutable=["batch_stats"]
    )
    assert images.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(np.asarray(images).transpose(0, 3, 1, 2), expected, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("arch", ["resnet18", "wrn40_2", "vgg11_bn"])
def test_param_counts_match_pytorch_at_100_classes(arch):
    net = _random_twin(arch, 100)
    assert sum(p.numel() for p in net.parameters()) == KNOWN_PARAMS[arch][1]


@pytest.mark.torch
def test_other_architecture_is_refused():
    state_dict = _numpy_state_dict(_random_twin("wrn16_1", 10))
    with pytest.raises(ValueError, match=r"block1\.layer\.0\.conv1\.weight.*\(16, 16, 3, 3\)"):
        convert_state_dict("wrn16_2", 10, state_dict)


def _small_state_dict():
    """A resnet8 state dict of zeros in PyTorch's shapes, built without torch."""
    model = create_model("resnet8", num_classes=10)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
    )
    expected = torch_import._expected_tensors(torch_import._rules(model), variables)
    return {key: np.zeros(shape, np.float32) for key, (_, _, shape) in expected.items()}


def test_conversion_without_torch():
    state_dict = _small_state_dict()
    state_dict["conv1.weight"] = np.arange(16 * 3 * 9, dtype=np.float32).reshape(16, 3, 3, 3)
    state_dict["fc.weight"] = np.arange(10 * 64, dtype=np.float32).reshape(10, 64)
    state_dict["bn1.num_batches_tracked"] = np.array(7)
    variables = convert_state_dict("resnet8", 10, state_dict)
    np.testing.assert_array_equal(
        variables["params"]["conv1"]["kernel"], state_dict["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state_dict["fc.weight"].T)
    assert set(variables["batch_stats"]["layer1_0"]["bn1"]) == {"mean", "var"}
    assert "downsample" not in str(variables)
    assert "shortcut_conv" in variables["params"]["layer2_0"]
    assert count_params(variables["params"]) == 78_042


def test_unexpected_and_missing_keys():
    state_dict = _small_state_dict()
    with pytest.raises(ValueError, match="'extra.weight'.*does not exist in resnet8"):
        convert_state_dict("resnet8", 10, {**state_dict, "extra.weight": np.zeros(3)})
    del state_dict["layer3.0.downsample.1.running_var"]
    with pytest.raises(ValueError, match="lacks 1 key.*downsample.1.running_var"):
        convert_state_dict("resnet8", 10, state_dict)
    with pytest.raises(ValueError, match="Unknown model 'resnet1000'"):
        convert_state_dict("resnet1000", 10, state_dict)
    with pytest.raises(ValueError, match="No PyTorch import for Generator"):
        convert_state_dict("generator", None, state_dict)


@pytest.mark.torch
@pytest.mark.parametrize(
    "arch, pth_name, flags, dataset, image_shape",
    [
        # The original's naming gives the dataset; an unregistered one would give 32x32x3.
        ("resnet8", "cifar10_resnet8.pth", [], "cifar10", [32, 32, 3]),
        # torchvision's naming does not: --dataset, whose registered shape is used.
        ("mobilenetv2_imagenet", "mobilenet_v2-b0353104.pth", ["--dataset=imagenet2012"],
         "imagenet2012", [224, 224, 3]),
    ],
)  # fmt: skip
def test_script_end_to_end(tmp_path, arch, pth_name, flags, dataset, image_shape):
    torch, _ = _torch()
    pytest.importorskip("fastdfkd_jax.checkpoint")
    from fastdfkd_jax.checkpoint import load_teacher

    net = _random_twin(arch, 10)
    pth = tmp_path / pth_name
    # The original's checkpoint layout, saved from nn.DataParallel.
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, pth)
    out = tmp_path / "teacher"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [
            sys.executable,
            SCRIPT,
            f"--arch={arch}",
            "--num_classes=10",
            f"--pth={pth}",
            f"--out={out}",
            *flags,
        ],
        check=True,
        env=env,
        cwd=REPO_ROOT,
    )
    meta, variables = load_teacher(str(out), arch=arch, num_classes=10)
    assert meta["dataset"] == dataset and list(meta["image_shape"]) == image_shape
    assert json.loads((out / "meta.json").read_text())["arch"] == arch
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    logits = jax.jit(lambda v, x: create_model(arch, num_classes=10).apply(v, x, train=False))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1))
    )
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)
