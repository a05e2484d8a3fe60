"""The precision policy: names, backend checks, how lowering changes, CPU equality, bfloat16 runs."""

import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import compilation, components, distill, main, precision, sharding
from fastdfkd_jax.synthesis import objective as objective_module
from tests.conftest import load_config
from tests.fastdfkd_jax import test_sharding as ts
from tests.fastdfkd_jax import tiny

pytestmark = pytest.mark.usefixtures("fast_compile")


def fake_gpu(capability, kind="NVIDIA H100 80GB HBM3"):
    return types.SimpleNamespace(platform="gpu", compute_capability=capability, device_kind=kind)


def test_policies_and_unknown_names():
    assert precision.POLICIES == ("highest", "tensorfloat32", "bfloat16")
    assert precision.DEFAULT_POLICY == "tensorfloat32"
    assert precision.compute_dtype("bfloat16") == jnp.bfloat16
    assert precision.compute_dtype("highest") is None  # float32, from the inputs and parameters
    assert precision.get("tensorfloat32").matmul_precision == "tensorfloat32"
    with pytest.raises(ValueError, match="Unknown precision 'fp16'; choose one of highest, "):
        precision.validate("fp16")


def test_bfloat16_needs_ampere_or_newer_gpus():
    precision.check_backend("bfloat16", [fake_gpu("9.0")])
    precision.check_backend("bfloat16", jax.devices("cpu"))  # XLA:CPU computes it via float32
    precision.check_backend("bfloat16", [types.SimpleNamespace(platform="tpu")])
    precision.check_backend("tensorfloat32", [fake_gpu("7.0", "Tesla V100")])
    with pytest.raises(ValueError, match=r"Tesla V100 \(compute capability 7.0\) has no bfloat16"):
        precision.check_backend("bfloat16", [fake_gpu("7.0", "Tesla V100")])


def test_bfloat16_on_an_old_gpu_fails_before_compiling(teacher_dir, monkeypatch):
    config = load_config("dfkd_digits.py:fast2,runlocal")
    config.teacher.checkpoint = teacher_dir
    config.precision = "bfloat16"
    monkeypatch.setattr(
        precision, "bfloat16_unsupported_reason", lambda device: "a test GPU has none"
    )
    compiled = []
    monkeypatch.setattr(compilation, "compile_jitted", lambda *a, **k: compiled.append(a))
    with pytest.raises(ValueError, match="precision='bfloat16' is not supported here: a test"):
        components.build(config)
    assert not compiled


def matmul_precisions(text):
    """The precision attributes of the dots and convolutions of a lowered module."""
    found = re.findall(r"precision = \[(\w+), (\w+)\]", text)
    found += re.findall(r"#stablehlo<precision (\w+)>", text)
    return {name for match in found for name in (match if isinstance(match, tuple) else (match,))}


def test_scope_sets_the_lowered_precision():
    def f(x, w):
        conv = jax.lax.conv_general_dilated(x[None, :, :, None], w[:3, :3, None, None], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
        return jnp.dot(x, w) + conv[0, :, :, 0]

    x = jnp.ones((4, 4))
    seen = {}
    for name in precision.POLICIES:
        with compilation.precision_scope(name):
            seen[name] = matmul_precisions(jax.jit(f).lower(x, x).as_text())
    assert seen == {"highest": {"HIGHEST"}, "tensorfloat32": {"HIGH"}, "bfloat16": {"HIGH"}}
    # aot_compile takes the policy itself, whatever the enclosing scope says.
    mesh = ts.mesh_of(1)
    with compilation.precision_scope("highest"):
        compiled, _ = compilation.aot_compile(
            f, x, x, mesh=mesh, out_shardings=None, donate_argnums=(), precision="tensorfloat32"
        )
    assert compiled.as_text()  # compiles


def objective_value_and_grads(policy):
    """Loss and gradients of the inversion objective (generator -> teacher and student) of the
    tiny models under `policy`, on CPU: one forward and backward pass through every kind of layer
    the runs use (transposed and plain convolutions, BatchNorm, Dense), with no optimizer update
    (Adam's normalized step turns a one-ulp gradient difference into a full learning-rate step,
    which made an earlier end-to-end version of this comparison differ by 1e-3 on CI)."""
    teacher, teacher_vars, student, student_vars = ts.models()
    objective = tiny.make_objective(teacher, student)
    generator = tiny.tiny_generator()
    z = jax.random.normal(jax.random.PRNGKey(3), (ts.BATCH, generator.nz))
    generator_vars = generator.init(jax.random.PRNGKey(4), z)
    targets = jnp.arange(ts.BATCH) % tiny.NUM_CLASSES
    memory = objective_module.init_bn_memory(objective, teacher_vars, tiny.IMAGE_SHAPE)

    def loss(params, z):
        images, _ = generator.apply(
            {**generator_vars, "params": params}, z, train=True, mutable=["batch_stats"]
        )
        value, (_, parts) = objective(
            images, targets, jax.random.PRNGKey(5), teacher_vars, student_vars, memory,
            jnp.float32(0.5),
        )  # fmt: skip
        return value, parts

    with compilation.precision_scope(policy):
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        return jax.device_get(step(generator_vars["params"], z))


# float32 rounding in a different order of additions: far below TF32's 10-bit mantissa (~1e-3).
FLOAT32_REORDERING_RTOL, FLOAT32_REORDERING_ATOL = 1e-5, 1e-7


@pytest.fixture
def fresh_compiles():
    """Compiles without the persistent cache: both sides of a comparison compiled here, under the
    same flags (an executable cached by an earlier test under other XLA flags once made this
    comparison differ by one ulp in the full suite)."""
    previous = jax.config.values["jax_enable_compilation_cache"]
    jax.config.update("jax_enable_compilation_cache", False)
    yield
    jax.config.update("jax_enable_compilation_cache", previous)


@pytest.mark.usefixtures("fresh_compiles")
def test_tensorfloat32_equals_highest_on_cpu():
    """XLA:CPU ignores the requested precision: on a CPU the two policies give the same loss and
    gradients up to float32 rounding (so runs need not be repeated per policy there), while
    TF32's products would differ in the fourth digit."""
    highest = objective_value_and_grads("highest")
    tf32 = objective_value_and_grads("tensorfloat32")
    assert np.isfinite(highest[0][0]) and highest[0][0] > 0
    for a, b in zip(jax.tree.leaves(highest), jax.tree.leaves(tf32), strict=True):
        np.testing.assert_allclose(a, b, rtol=FLOAT32_REORDERING_RTOL, atol=FLOAT32_REORDERING_ATOL)


def test_the_tolerance_tells_tensorfloat32_rounding_apart():
    """The comparison above can fail: rounding a matmul's inputs to TF32's 10-bit mantissa, as an
    accelerator honouring the policy does, moves the result past its tolerance."""
    a = jax.random.normal(jax.random.PRNGKey(0), (16, 64))
    b = jax.random.normal(jax.random.PRNGKey(1), (64, 16))

    def to_tf32(x):  # keep 10 of float32's 23 mantissa bits
        bits = np.asarray(x).view(np.uint32) & np.uint32(0xFFFFE000)
        return jnp.asarray(bits.view(np.float32))

    exact = np.asarray(jnp.dot(a, b, precision="highest"))
    rounded = np.asarray(jnp.dot(to_tf32(a), to_tf32(b), precision="highest"))
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            rounded, exact, rtol=FLOAT32_REORDERING_RTOL, atol=FLOAT32_REORDERING_ATOL
        )


def test_bfloat16_run_end_to_end(teacher_dir, tmp_path):
    config = load_config("dfkd_digits.py:fast2,runlocal")
    config.teacher.checkpoint = teacher_dir
    config.precision = "bfloat16"
    summary = main.run(config, str(tmp_path))
    assert summary["precision"] == "bfloat16"
    assert 0.0 <= summary["student_test_accuracy"] <= 1.0
    parts = components.build(config)
    assert parts.student.dtype == parts.teacher.dtype == jnp.bfloat16
    assert parts.synthesizer.generator.dtype == jnp.bfloat16
    # Master weights, optimizer state and the pool stay float32 (uint8 pool) in the checkpoint.
    state = components.init_state(parts, components.run_keys(0))
    leaves = jax.tree.leaves(state)
    dtypes = {leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    # The compiled KD step computes in bfloat16 and returns a float32 loss.
    fn, _ = distill.compile_kd_steps(
        state,
        parts.teacher_vars,
        jax.random.PRNGKey(0),
        mesh=parts.mesh,
        num_steps=1,
        unroll=True,
        donate=False,
        **components.kd_step_options(parts),
    )
    assert "bf16" in fn.as_text()
    _, metrics = fn(state, parts.teacher_vars, jax.random.PRNGKey(0), np.int32(0))
    assert metrics["kd_loss"].dtype == jnp.float32 and np.isfinite(metrics["kd_loss"])
    assert sharding.data_size(parts.mesh) == 1
