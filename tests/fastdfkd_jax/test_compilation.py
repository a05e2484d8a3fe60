"""`compilation.compile_jitted`: XLA's per-backend options (on CPU, only dot products go to YNNPACK)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import compilation


def conv_relu_pool(x, w):
    """A 3x3 convolution [N, 16, 16, 32] -> ReLU -> global mean [N, 32]: what XLA:CPU fuses."""
    y = jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.maximum(y, 0.0).mean(axis=(1, 2))


def inputs():
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (8, 16, 16, 32))
    w = jax.random.normal(kw, (3, 3, 32, 32)) / 17.0
    return x, w


def library_convolutions(hlo: str) -> int:
    """How many computations called by a YNNPACK fusion contain a convolution."""
    called = set(re.findall(r"ynn_fusion[.\d]* = .*?calls=(%[\w.]+)", hlo))
    # One computation per unindented block: "%name (args) -> shape {" ... "}".
    bodies = {block.split(" ", 1)[0]: block for block in re.split(r"\n(?=%)", hlo)}
    return sum(" convolution(" in bodies.get(name, "") for name in called)


def test_compiler_options_by_backend():
    assert compilation.compiler_options("gpu") is None
    assert compilation.compiler_options("tpu") is None
    options = compilation.compiler_options("cpu")
    assert options == compilation.CPU_COMPILER_OPTIONS
    options["another"] = "x"  # a copy: the module's options do not change
    assert "another" not in compilation.CPU_COMPILER_OPTIONS


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's library fusions")
def test_cpu_convolutions_stay_out_of_the_library_with_the_same_result():
    x, w = inputs()
    jitted = jax.jit(conv_relu_pool)
    with compilation.precision_scope("highest"):
        default = jitted.lower(x, w).compile()
    ours = compilation.compile_jitted(jitted, x, w, precision="highest")
    # XLA's default hands the convolution to YNNPACK; with the project's options it stays in XLA.
    assert library_convolutions(default.as_text()) >= 1
    assert library_convolutions(ours.as_text()) == 0
    np.testing.assert_allclose(ours(x, w), default(x, w), rtol=1e-5, atol=1e-6)


def test_an_option_this_xla_does_not_know_falls_back_to_its_defaults(monkeypatch):
    monkeypatch.setattr(compilation, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1"})
    x, w = inputs()
    compiled = compilation.compile_jitted(jax.jit(conv_relu_pool), x, w)
    np.testing.assert_allclose(compiled(x, w), jax.jit(conv_relu_pool)(x, w), rtol=1e-5, atol=1e-6)
