"""Shared fixtures of the spline tests: configs loaded by path, as the entry point loads them."""

import importlib.util
import pathlib

import numpy as np
import pytest

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def load_config(name: str, arg: str | None = None):
    """``get_config(arg)`` of ``configs/<name>.py`` (configs are files, not an installed package)."""
    spec = importlib.util.spec_from_file_location(f"_config_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.fixture
def spline_config():
    """The ``load_config`` function."""
    return load_config


def mlp_float64(params: dict, z) -> np.ndarray:
    """``spline.init.MLP`` applied in numpy float64: independent of the backend's matmul precision.

    Args:
      params: ``{"Dense_0": {"kernel", "bias"}, ...}``.
      z: [N, d] inputs.

    Returns:
      [N, outputs] float64.

    """
    h = np.asarray(z, np.float64)
    n = len(params)
    for i in range(n):
        layer = params[f"Dense_{i}"]
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < n - 1:
            h = np.maximum(h, 0.0)
    return h
