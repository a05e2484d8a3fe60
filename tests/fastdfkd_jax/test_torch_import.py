"""Tests of the PyTorch teacher import against PyTorch twins of every zoo classifier."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.models import CLASSIFIERS, count_params, create_model, resnet, torch_import
from fastdfkd_jax.models.torch_import import convert_state_dict
from tests.fastdfkd_jax.test_models import KNOWN_PARAMS

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "import_torch_teacher.py")


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from tests.fastdfkd_jax import torch_reference

    return torch, torch_reference


def _in_channels(arch):
    return 1 if arch.startswith(("digits", "fmnist")) else 3


def _random_twin(arch, num_classes, seed=0):
    torch, torch_reference = _torch()
    net = torch_reference.build(arch, num_classes, _in_channels(arch))
    return torch_reference.randomize_(net, torch.Generator().manual_seed(seed)).eval()


def _numpy_state_dict(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.mark.torch
@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_logits_match_pytorch(arch):
    torch, _ = _torch()
    num_classes = 10
    net = _random_twin(arch, num_classes)
    # Parameter counts of the twins are the known values of test_models.
    assert sum(p.numel() for p in net.parameters()) == KNOWN_PARAMS[arch][0]
    x = np.random.RandomState(0).randn(2, _in_channels(arch), 32, 32).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    variables = convert_state_dict(arch, num_classes, _numpy_state_dict(net))
    model = create_model(arch, num_classes=num_classes)
    logits = model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)


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
    expected = torch_import._expected_tensors(resnet.ResNetTiny, variables)
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
    with pytest.raises(ValueError, match="Unknown classifier 'generator'"):
        convert_state_dict("generator", 10, state_dict)


@pytest.mark.torch
def test_script_end_to_end(tmp_path):
    torch, _ = _torch()
    pytest.importorskip("fastdfkd_jax.checkpoint")
    from fastdfkd_jax.checkpoint import load_teacher

    net = _random_twin("resnet8", 10)
    pth = tmp_path / "cifar10_resnet8.pth"
    # The original's checkpoint layout, saved from nn.DataParallel.
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, pth)
    out = tmp_path / "teacher"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--arch=resnet8",
            "--num_classes=10",
            f"--pth={pth}",
            f"--out={out}",
        ],
        check=True,
        env=env,
        cwd=REPO_ROOT,
    )
    meta, variables = load_teacher(str(out), arch="resnet8", num_classes=10)
    assert meta["dataset"] == "cifar10" and list(meta["image_shape"]) == [32, 32, 3]
    assert json.loads((out / "meta.json").read_text())["arch"] == "resnet8"
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    logits = create_model("resnet8", num_classes=10).apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)
