"""Shared fixtures of the spline tests: configs loaded by path, as the entry point loads them."""

import importlib.util
import pathlib

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
