"""`compilation`: XLA's per-backend options (on CPU, only dot products go to YNNPACK); FLOP counts;
the persistent cache."""

import os
import re
import threading
import time

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


def test_program_flops_counts_every_multiply_add_of_the_lowered_program():
    x, w = inputs()
    # 3x3 SAME on 16x16: 2 + 3 * 14 + 2 = 46 valid taps per row and column of outputs.
    taps = 46 * 46
    conv_flops = 2 * 8 * taps * 32 * 32
    # The ReLU (one per output) and the mean (one add per output, one divide per channel).
    outputs = 8 * 16 * 16 * 32
    expected = conv_flops + 2 * outputs + 8 * 32
    assert compilation.program_flops(conv_relu_pool, x, w) == pytest.approx(expected, rel=1e-3)
    # On CPU the convolution stays an XLA convolution, so the compiled count agrees.
    compiled = compilation.compile_jitted(jax.jit(conv_relu_pool), x, w)
    assert compilation.flops(compiled) == pytest.approx(expected, rel=1e-2)


def test_program_flops_counts_a_loop_body_once_and_each_unrolled_step():
    a, b = jnp.ones((8, 16)), jnp.ones((16, 16))

    def repeated(a, b, unroll):
        return jax.lax.scan(lambda c, _: (c @ b, None), a, None, length=5, unroll=unroll)[0]

    one_matmul = 2 * 8 * 16 * 16
    unrolled = compilation.program_flops(lambda a, b: repeated(a, b, True), a, b)
    looped = compilation.program_flops(lambda a, b: repeated(a, b, 1), a, b)
    assert unrolled == 5 * one_matmul
    assert looped < 1.1 * one_matmul  # the body once, plus the loop counter


def cache_entries(path: str) -> set[str]:
    """The persistent cache's entries (JAX creates the directory at its first write)."""
    return set(os.listdir(path)) if os.path.isdir(path) else set()


def test_a_cache_directory_set_elsewhere_still_caches_every_compile():
    # The directory is already JAX's cache, set by someone else (the user, or `spline`) who
    # kept JAX's 1 s minimum compile time: a short compile must still be written, else whether
    # it is cached depends on the machine's load.
    path = compilation.use_persistent_cache("")
    assert jax.config.jax_compilation_cache_dir == path
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)  # JAX's default
    try:
        assert compilation.enable_persistent_cache(path) == path
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        before = cache_entries(path)
        offset = float(time.perf_counter_ns() % 1000)  # a program no earlier run has cached

        def tiny_program_to_cache(x):
            return x + offset

        jax.block_until_ready(jax.jit(tiny_program_to_cache)(jnp.ones(3)))
        added = cache_entries(path) - before
        assert [name.split("-")[0] for name in added].count("jit_tiny_program_to_cache") == 1
    finally:
        compilation.enable_persistent_cache(path)


def test_compile_seconds_in_counts_this_threads_compilations_only():
    offset = float(time.perf_counter_ns() % 1000)  # a program no earlier run has compiled

    def chain(x):
        for _ in range(40):
            x = jnp.tanh(x @ x + offset)
        return x

    x = jnp.ones((8, 8))
    with compilation.compile_seconds_in() as seconds:
        start = time.perf_counter()
        jax.block_until_ready(jax.jit(chain)(x))  # traced, lowered and compiled on first call
        first_call = time.perf_counter() - start
        compiled = seconds()
        jax.block_until_ready(jax.jit(chain)(x))  # JAX's in-memory cache: no compilation
        assert seconds() == compiled
        # A compilation on another thread is not this thread's.
        worker = threading.Thread(target=lambda: jax.jit(lambda y: y * offset - 1.0)(x))
        worker.start()
        worker.join()
        assert seconds() == compiled
    # Most of a first call is compiling; none of the compilation is counted twice.
    assert 0.5 * first_call < compiled <= first_call
    with compilation.compile_seconds_in() as after:
        pass
    jax.block_until_ready(jax.jit(lambda y: y + offset + 1.0)(x))
    assert after() == 0.0  # the listener is gone once the block ends
