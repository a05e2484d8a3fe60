"""Synthesis: losses, BN memory, pool, and the three FastDFKD meta-gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastdfkd_jax.data import augment
from fastdfkd_jax.synthesis import (
    base,
    baseline_augment,
    baseline_losses,
    deepinversion,
    inner_optimizers,
    losses,
    objective,
)
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import init_bn_memory, js_divergence
from fastdfkd_jax.synthesis.steps import run_steps
from tests.fastdfkd_jax import tiny

# Tiny models: compile time dominates, so compile without most optimizations (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


# -- losses ---------------------------------------------------------------------------------------
def test_batch_moments_known_values():
    x = jnp.arange(12.0).reshape(2, 3, 2)  # channel 0: 0,2,...,10; channel 1: 1,3,...,11
    mean, var = losses.batch_moments(x)
    np.testing.assert_allclose(mean, [5.0, 6.0])
    np.testing.assert_allclose(var, [np.var(np.arange(0, 12, 2))] * 2)  # biased


def test_bn_loss_zero_at_running_stats_and_grows_with_gap():
    rm, rv = jnp.array([0.5, -1.0]), jnp.array([2.0, 0.25])
    records = [losses.BNRecord(rm, rv, rm, rv)]
    assert float(losses.bn_statistics_loss(records)) == 0.0
    gaps = [0.1, 0.5, 2.0]
    values = [
        float(losses.bn_statistics_loss([losses.BNRecord(rm + g, rv + g, rm, rv)])) for g in gaps
    ]
    # ||(g, g)|| + ||(g, g)|| = 2 * sqrt(2) * g: known values, increasing.
    np.testing.assert_allclose(values, [2 * np.sqrt(2) * g for g in gaps], rtol=1e-6)


def test_bn_loss_momentum_blend():
    rm, rv = jnp.zeros(1), jnp.ones(1)
    current = losses.BNRecord(jnp.array([1.0]), jnp.array([3.0]), rm, rv)
    memory = losses.BNMemory(means=(jnp.array([-1.0]),), vars=(jnp.array([1.0]),), ready=True)
    # Blend: mean 0.1*1 + 0.9*(-1) = -0.8; var 0.1*3 + 0.9*1 = 1.2 -> |1.2-1| + |-0.8-0| = 1.0.
    np.testing.assert_allclose(losses.bn_statistics_loss([current], memory, 0.9), 1.0, rtol=1e-6)
    not_ready = memory._replace(ready=jnp.zeros((), bool))
    np.testing.assert_allclose(losses.bn_statistics_loss([current], not_ready, 0.9), 3.0, rtol=1e-6)


def test_update_bn_memory_first_stores_then_blends():
    memory = losses.BNMemory((jnp.zeros(2),), (jnp.zeros(2),), jnp.zeros((), bool))
    memory = losses.update_bn_memory(
        memory, (jnp.array([1.0, 2.0]),), (jnp.array([4.0, 4.0]),), 0.9
    )
    np.testing.assert_allclose(memory.means[0], [1.0, 2.0])
    assert bool(memory.ready)
    memory = losses.update_bn_memory(
        memory, (jnp.array([11.0, 2.0]),), (jnp.array([4.0, 14.0]),), 0.9
    )
    np.testing.assert_allclose(memory.means[0], [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(memory.vars[0], [4.0, 5.0], rtol=1e-6)


def test_capture_bn_inputs_matches_manual_statistics():
    teacher, teacher_vars, _, _ = tiny.make_models(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, *tiny.IMAGE_SHAPE))
    logits, records = losses.capture_bn_inputs(teacher, teacher_vars, x, train=False)
    np.testing.assert_allclose(logits, teacher.apply(teacher_vars, x, train=False), rtol=1e-6)
    assert len(records) == 2
    # The first BN's input is the first conv's output.
    conv = teacher_vars["params"]["Conv_0"]["kernel"]
    h = jax.lax.conv_general_dilated(
        x, conv, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(records[0].mean, h.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(records[0].var, h.var((0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        records[0].running_var, teacher_vars["batch_stats"]["BatchNorm_0"]["var"]
    )


def test_adversarial_mask_keeps_only_agreeing_samples():
    teacher = jnp.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    student = jnp.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.5]])  # agree, disagree, disagree
    kl = losses.kl_per_sample(student, teacher, 1.0)
    expected = -kl[0] / 3.0
    np.testing.assert_allclose(losses.adversarial_loss(student, teacher), expected, rtol=1e-6)
    # Changing a disagreeing sample's logits (still disagreeing) does not change the loss.
    student2 = student.at[1].set(jnp.array([5.0, -1.0]))
    np.testing.assert_allclose(losses.adversarial_loss(student2, teacher), expected, rtol=1e-6)


def test_kd_loss_known_value_and_zero_at_equality():
    t = jnp.array([[1.0, 2.0, 3.0]])
    assert abs(float(losses.kd_loss(t, t, 4.0))) < 1e-6
    s = jnp.zeros((1, 3))
    p = jax.nn.softmax(t / 2.0)
    expected = np.sum(p * (np.log(p) - np.log(1 / 3))) * 4.0
    np.testing.assert_allclose(losses.kd_loss(s, t, 2.0), expected, rtol=1e-5)


def test_js_divergence_symmetric_and_bounded():
    a, b = jnp.array([[3.0, 0.0, -1.0]]), jnp.array([[0.0, 2.0, 0.0]])
    np.testing.assert_allclose(js_divergence(a, b, 3.0), js_divergence(b, a, 3.0), rtol=1e-6)
    assert 0.0 < float(js_divergence(a, b, 1.0)) < np.log(2)
    assert abs(float(js_divergence(a, a, 1.0))) < 1e-6


# -- pool -----------------------------------------------------------------------------------------
def test_pool_wraps_around_at_capacity():
    pool = pool_lib.init_pool(5, (1, 1, 1))
    for value in range(1, 4):  # three batches of 2 into 5 slots
        pool = pool_lib.add(pool, jnp.full((2, 1, 1, 1), value / 10))
    # Slots 0,1 <- 0.1; 2,3 <- 0.2; 4 and (wrapping) 0 <- 0.3.
    np.testing.assert_allclose(pool.images[:, 0, 0, 0], [0.3, 0.1, 0.2, 0.2, 0.3], rtol=1e-6)
    assert int(pool.size) == 5 and int(pool.cursor) == 1


def test_pool_never_samples_empty_slots():
    pool = pool_lib.add(pool_lib.init_pool(100, (1, 1, 1)), jnp.full((3, 1, 1, 1), 0.5))
    samples = pool_lib.sample(pool, jax.random.PRNGKey(0), 1000)
    np.testing.assert_array_equal(samples, 0.5)


@pytest.mark.parametrize("quantize, level", [("truncate", np.floor), ("round", np.round)])
def test_pool_uint8_round_trip(quantize, level):
    # 'truncate' is the original's `(x * 255).astype('uint8')` of its PNG pool.
    pool = pool_lib.init_pool(4, (2, 2, 1), "uint8", quantize)
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 2, 2, 1))
    pool = pool_lib.add(pool, images)
    decoded = pool_lib.sample(pool, jax.random.PRNGKey(1), 64)
    assert pool.images.dtype == jnp.uint8
    codes = np.asarray(pool.images).ravel()
    np.testing.assert_array_equal(
        np.sort(codes), np.sort(level(np.asarray(images, np.float32).ravel() * np.float32(255)))
    )
    decoded_codes = np.round(np.asarray(decoded) * 255).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(decoded) * 255, decoded_codes, atol=1e-4)
    assert np.all(np.isin(decoded_codes.ravel(), codes))


def test_pool_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        pool_lib.init_pool(0, (1, 1, 1))
    with pytest.raises(ValueError, match="float16"):
        pool_lib.init_pool(3, (1, 1, 1), "float16")
    with pytest.raises(ValueError, match="quantize"):
        pool_lib.init_pool(3, (1, 1, 1), "uint8", "ceil")
    with pytest.raises(ValueError, match="Cannot add 4 images to a pool of capacity 3"):
        pool_lib.add(pool_lib.init_pool(3, (1, 1, 1)), jnp.zeros((4, 1, 1, 1)))


# -- run_steps -----------------------------------------------------------------------------------
def _conv_step(carry, k):
    """A step with a convolution and a step-dependent update (the shape of an inner step)."""
    kernel, x = carry
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return (kernel * 0.9 + 0.01 * k, jnp.tanh(y)), jnp.sum(y * y)


def _conv_carry():
    keys = jax.random.split(jax.random.PRNGKey(0))
    return (
        0.3 * jax.random.normal(keys[0], (3, 3, 2, 2)),
        jax.random.normal(keys[1], (2, 5, 5, 2)),
    )


@pytest.mark.parametrize("unroll", [True, False])
def test_run_steps_matches_a_python_loop_and_its_gradient(unroll):
    carry = _conv_carry()

    def by_loop(carry, first_step):
        outputs = []
        for k in range(4):
            carry, out = _conv_step(carry, first_step + k)
            outputs.append(out)
        return carry, jnp.stack(outputs)

    def by_run_steps(carry, first_step):
        return run_steps(_conv_step, carry, 4, unroll=unroll, first_step=first_step)

    got = jax.jit(by_run_steps)(carry, 3)
    want = jax.jit(by_loop)(carry, 3)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # The gradient through the steps (what the exact meta-gradient takes).
    grad = lambda f: jax.jit(jax.grad(lambda c: jnp.sum(f(c, 0)[1])))(carry)  # noqa: E731
    for g, w in zip(jax.tree.leaves(grad(by_run_steps)), jax.tree.leaves(grad(by_loop))):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_unrolled_steps_trace_the_body_once_and_compile_without_a_loop():
    """What makes `unroll=True` the CPU choice: no while loop in the program (XLA:CPU runs
    convolutions in a loop body slowly), and one trace of the body whatever the step count
    (a Python loop traces it once per step: the cost of a warm-cache compilation)."""
    for unroll, num_steps, loops in ((True, 6, 0), (True, 1, 0), (False, 6, 1)):
        traces = []

        def counted(carry, k, traces=traces):  # a new function: JAX caches traces per function
            traces.append(k)
            return _conv_step(carry, k)

        lowered = jax.jit(
            lambda c, u=unroll, n=num_steps: run_steps(counted, c, n, unroll=u)
        ).lower(_conv_carry())
        assert len(traces) == 1, (unroll, num_steps, len(traces))
        # In the program XLA receives: XLA removes a loop that runs once only after it has chosen
        # how to compute the convolutions inside.
        assert lowered.as_text().count("stablehlo.while") == loops, (unroll, num_steps)


# -- FastDFKD -------------------------------------------------------------------------------------
def make_synth(
    meta_gradient, g_steps=3, strategy="meta", dtype=jnp.float32, bn_momentum=0.0, unroll=True
):
    teacher, teacher_vars, student, student_vars = tiny.make_models(jax.random.PRNGKey(0), dtype)
    synth = tiny.make_fast_synthesizer(
        teacher,
        student,
        meta_gradient=meta_gradient,
        g_steps=g_steps,
        batch_size=4,
        strategy=strategy,
        bn_momentum=bn_momentum,
        unroll=unroll,
    )
    memory = init_bn_memory(synth.objective, teacher_vars, tiny.IMAGE_SHAPE)
    return synth, teacher_vars, student_vars, memory


def inner_args(synth, rng):
    """The latents, targets and inner key that `synthesize` draws from `rng`."""
    z_rng, y_rng, inner_rng, _ = jax.random.split(rng, 4)
    z0 = jax.random.normal(z_rng, synth.latent_shape())
    targets = jax.random.randint(y_rng, (synth.batch_size,), 0, synth.num_classes)
    return z0, targets, inner_rng


def held_constant_objective(synth, params, batch_stats, z0, targets, rng, tv, sv, memory, adv):
    """The exact meta-objective (the summed inner losses) with every inner update held constant.

    The inner iterates are G'_k = G + (constant steps), so its gradient is first order: the sum of
    the inner gradients.
    """
    tx = synth.inner_transform()
    inner = {"g": params, "z": z0}
    opt_state = tx.init(inner)

    def loss_fn(inner, k):
        images = synth.generate(inner["g"], batch_stats, inner["z"])
        return synth.objective(images, targets, jax.random.fold_in(rng, k), tv, sv, memory, adv)[0]

    total = 0.0
    for k in range(synth.g_steps):
        loss, grads = jax.value_and_grad(loss_fn)(inner, k)
        total = total + loss
        updates, opt_state = tx.update(jax.lax.stop_gradient(grads), opt_state, inner)
        inner = jax.tree.map(lambda p, u: p + jax.lax.stop_gradient(u), inner, updates)
    return total


def test_inner_optimizers_take_their_known_first_steps():
    """NSGD moves each tensor by -lr * g / rms(g); Adam's first step is -lr * sign(g); the
    generator's parameters at lr_g, the latents at lr_z."""
    from fastdfkd_jax.synthesis.inner_optimizers import generator_and_latent_optimizer

    grads = {"g": {"w": jnp.array([3.0, -4.0])}, "z": jnp.array([[1.0, 0.0]])}
    nsgd = generator_and_latent_optimizer("nsgd", 0.1, 0.01, (0.5, 0.999))
    steps, _ = nsgd.update(grads, nsgd.init(grads))
    np.testing.assert_allclose(steps["g"]["w"], -0.1 * np.array([3.0, -4.0]) / np.sqrt(12.5))
    np.testing.assert_allclose(steps["z"], -0.01 * np.array([[1.0, 0.0]]) / np.sqrt(0.5))
    adam = generator_and_latent_optimizer("adam", 0.1, 0.01, (0.5, 0.999))
    steps, _ = adam.update(grads, adam.init(grads))
    np.testing.assert_allclose(steps["g"]["w"], [-0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(steps["z"], [[-0.01, 0.0]], rtol=1e-5)


# Three inner steps: the first Adam step is nearly lr * sign(g), whose derivative is ~0, so with
# two steps the second-order terms of the summed objective would be tiny.
# The unrolled inner steps (CPU) and the lax.scan (accelerators: `synthesis.unroll` 'auto').
# One combination in the default run (the scan with remat and Adam; NSGD's steps are checked by
# `test_inner_optimizers_take_their_known_first_steps`), the other five marked slow.
@pytest.mark.parametrize(
    "unroll, remat, inner",
    [
        # 45 s: slow.
        pytest.param(True, False, "adam", id="unrolled-adam", marks=pytest.mark.slow),
        pytest.param(False, True, "adam", id="scan-remat-adam"),
        pytest.param(True, False, "nsgd", id="unrolled-nsgd", marks=pytest.mark.slow),  # 24 s
        pytest.param(True, True, "adam", id="unrolled-remat-adam", marks=pytest.mark.slow),
        pytest.param(False, False, "adam", id="scan-adam", marks=pytest.mark.slow),
        pytest.param(False, False, "nsgd", id="scan-nsgd", marks=pytest.mark.slow),
    ],
)
def test_exact_meta_gradient_matches_finite_differences(unroll, remat, inner):
    with jax.enable_x64(True):
        synth, tv, sv, memory = make_synth("exact", g_steps=3, dtype=jnp.float64, unroll=unroll)
        synth = dataclasses.replace(synth, remat=remat, inner_optimizer=inner)
        tv, sv = jax.tree.map(lambda x: x.astype(jnp.float64), (tv, sv))
        state = synth.init(jax.random.PRNGKey(1))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), state.params)
        z0, targets, inner_rng = inner_args(synth, jax.random.PRNGKey(2))
        z0 = z0.astype(jnp.float64)
        adv = jnp.asarray(0.5, jnp.float64)
        args = (state.batch_stats, z0, targets, inner_rng, tv, sv, memory, adv)

        def objective(p):
            return synth.inner_run(p, *args)[0]

        grad = jax.jit(jax.grad(objective))(params)
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
        direction = jax.tree.unflatten(
            tree, [jax.random.normal(k, x.shape, jnp.float64) for k, x in zip(keys, leaves)]
        )

        def along(g):
            return sum(
                jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction))
            )

        eps = 1e-6
        f = jax.jit(objective)
        shifted = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, params, direction)  # noqa: E731
        numeric = (f(shifted(1.0)) - f(shifted(-1.0))) / (2 * eps)
        analytic = along(grad)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5)
        # The same objective with the inner steps held constant has the same value but not the
        # same gradient: the second-order terms (through the inner updates) matter.
        held = jax.jit(lambda p: held_constant_objective(synth, p, *args))
        np.testing.assert_allclose(held(params), f(params), rtol=1e-10)
        first_order = along(
            jax.jit(jax.grad(lambda p: held_constant_objective(synth, p, *args)))(params)
        )
        assert abs(float(first_order - analytic)) > 1e-2 * abs(float(analytic))
        # ... and the held-constant gradient is the first-order meta-gradient (the sum of the inner
        # gradients): the two meta-gradients share one objective.
        _, aux = jax.jit(synth.inner_run)(params, *args)
        np.testing.assert_allclose(along(aux["grad_sum"]), first_order, rtol=1e-8)


@pytest.mark.parametrize(
    "meta_gradient",
    [pytest.param("exact", marks=pytest.mark.slow), "first_order"],  # exact: 18 s
)
def test_scan_equals_unrolled_steps(meta_gradient):
    """One synthesis call with the inner steps as a lax.scan leaves the state that the unrolled
    steps leave (to float32 rounding: XLA fuses a loop body and straight-line code differently)."""
    results = []
    for unroll in (True, False):
        synth, tv, sv, memory = make_synth(meta_gradient, g_steps=2, bn_momentum=0.9, unroll=unroll)
        state = synth.init(jax.random.PRNGKey(1))
        results.append(jax.jit(synth.synthesize)(state, memory, tv, sv, jax.random.PRNGKey(2), 0.5))
    (state_u, memory_u, images_u, metrics_u), (state_s, memory_s, images_s, metrics_s) = results
    np.testing.assert_allclose(images_s, images_u, rtol=1e-5, atol=1e-6)
    for got, want in zip(
        jax.tree.leaves((memory_s, metrics_s)), jax.tree.leaves((memory_u, metrics_u))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The meta generators compared by what they compute: biases right before a BatchNorm get a
    # gradient that is zero up to rounding, which Adam's first step turns into +-lr moves that
    # change nothing downstream (as in test_sharding.py).
    z = jax.random.normal(jax.random.PRNGKey(3), synth.latent_shape())
    generate = jax.jit(synth.generate)
    np.testing.assert_allclose(
        generate(state_s.params, state_s.batch_stats, z),
        generate(state_u.params, state_u.batch_stats, z),
        rtol=1e-4,
        atol=1e-5,
    )


def manual_inner(synth, params, batch_stats, z0, targets, rng, tv, sv, memory, adv, num_steps=None):
    """A plain Python loop of the inner steps: the reference for `inner_run`."""
    tx = synth.inner_transform()
    inner = {"g": params, "z": z0}
    opt_state = tx.init(inner)
    grad_sum = jax.tree.map(jnp.zeros_like, params)
    step_losses = []

    def loss_fn(inner, k):
        images = synth.generate(inner["g"], batch_stats, inner["z"])
        return synth.objective(images, targets, jax.random.fold_in(rng, k), tv, sv, memory, adv)[0]

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    update = jax.jit(tx.update)
    for k in range(synth.g_steps if num_steps is None else num_steps):
        loss, grads = value_and_grad(inner, k)
        step_losses.append(float(loss))
        grad_sum = jax.tree.map(jnp.add, grad_sum, grads["g"])
        updates, opt_state = update(grads, opt_state, inner)
        inner = optax.apply_updates(inner, updates)
    return grad_sum, inner, step_losses


def test_inner_run_matches_a_plain_loop():
    synth, tv, sv, memory = make_synth("first_order")
    state = synth.init(jax.random.PRNGKey(1))
    z0, targets, inner_rng = inner_args(synth, jax.random.PRNGKey(2))
    adv = jnp.asarray(0.5)
    _, aux = jax.jit(synth.inner_run)(
        state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, adv
    )
    grad_sum, adapted, step_losses = manual_inner(
        synth, state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, adv
    )
    np.testing.assert_allclose(aux["losses"], step_losses, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(aux["grad_sum"]), jax.tree.leaves(grad_sum)):
        np.testing.assert_allclose(
            got, want, rtol=1e-3, atol=1e-5 * float(jnp.abs(want).max()) + 1e-7
        )
    # The adapted generator, compared by what it computes: the Dense bias right before a BatchNorm
    # has an exactly-zero gradient in exact arithmetic, and Adam without eps_root (the original's)
    # turns its rounding noise into +-lr steps that change no output.
    np.testing.assert_allclose(
        synth.generate(aux["adapted"], state.batch_stats, z0),
        synth.generate(adapted["g"], state.batch_stats, z0),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("meta_gradient", ["first_order", "reptile"])
def test_first_order_and_reptile_meta_updates(meta_gradient):
    synth, tv, sv, memory = make_synth(meta_gradient)
    state = synth.init(jax.random.PRNGKey(1))
    rng = jax.random.PRNGKey(2)
    adv = jnp.asarray(0.5)
    new_state, _, images, metrics = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, adv)

    z0, targets, inner_rng = inner_args(synth, rng)
    _, aux = jax.jit(synth.inner_run)(
        state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, adv
    )
    if meta_gradient == "first_order":
        meta_grad = aux["grad_sum"]  # the sum of the inner gradients
    else:
        meta_grad = jax.tree.map(lambda p, a: 3.0 * (p - a), state.params, aux["adapted"])
    updates, _ = optax.adam(0.01, b1=0.5, b2=0.999).update(meta_grad, state.opt_state, state.params)
    expected = optax.apply_updates(state.params, updates)
    # The Dense bias feeding a BatchNorm (`l1.bias`) has an exactly-zero gradient in exact
    # arithmetic: its inner gradients are rounding noise, which the inner Adam steps turn into
    # steps of full size (so Reptile's meta-gradient for it is not small) with signs that differ
    # between two compiled functions on a GPU. Adam's first meta step moves it by at most lr, and
    # by exactly lr when the meta-gradient is not tiny against Adam's epsilon (Reptile).
    noise_only = {("l1", "bias")}
    flat = lambda tree: {  # noqa: E731
        tuple(k.key for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
    got_params, want_params, grads = flat(new_state.params), flat(expected), flat(meta_grad)
    for name, got in got_params.items():
        if name in noise_only:
            moved = np.abs(got - flat(state.params)[name])
            assert np.all(moved <= 0.01 * (1 + 1e-3)), moved
            if meta_gradient == "reptile":
                np.testing.assert_allclose(moved, 0.01, rtol=1e-3)
            continue
        # Elsewhere too, Adam's first step is lr * sign(g): only signs of non-noise g compare.
        meaningful = np.abs(grads[name]) > 1e-5
        np.testing.assert_allclose(
            got[meaningful], want_params[name][meaningful], rtol=1e-4, atol=1e-6
        )
    np.testing.assert_allclose(metrics["synth_loss_first"], aux["losses"][0], rtol=1e-5)
    np.testing.assert_allclose(metrics["synth_best_loss"], aux["losses"].min(), rtol=1e-5)
    assert images.shape == (4, *tiny.IMAGE_SHAPE)


def test_best_iterate_images_are_the_lowest_loss_ones():
    synth, tv, sv, memory = make_synth("first_order", g_steps=4)
    state = synth.init(jax.random.PRNGKey(1))
    z0, targets, inner_rng = inner_args(synth, jax.random.PRNGKey(2))
    _, aux = jax.jit(synth.inner_run)(
        state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, 0.0
    )
    best = int(np.argmin(aux["losses"]))
    # The images of iterate `best`: the generator after `best` plain-loop steps.
    _, inner, _ = manual_inner(
        dataclasses.replace(synth, g_steps=best),
        state.params,
        state.batch_stats,
        z0,
        targets,
        inner_rng,
        tv,
        sv,
        memory,
        0.0,
    )
    expected = synth.generate(inner["g"], state.batch_stats, inner["z"])
    np.testing.assert_allclose(aux["best_images"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(aux["best_loss"], aux["losses"][best])


def test_independent_strategy_leaves_the_generator_unchanged():
    synth, tv, sv, memory = make_synth("first_order", strategy="independent")
    state = synth.init(jax.random.PRNGKey(1))
    rng = jax.random.PRNGKey(2)
    new_state, _, images, metrics = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, 0.0)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
        np.testing.assert_array_equal(a, b)
    # The inner loop starts from a fresh initialization (drawn from the call's key), not from the
    # (unchanged) meta parameters.
    z0, targets, inner_rng = inner_args(synth, rng)
    fresh, _ = synth.init_generator(jax.random.split(rng, 4)[3])
    run = jax.jit(synth.inner_run)
    _, from_fresh = run(fresh, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, 0.0)
    _, from_meta = run(state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, 0.0)
    np.testing.assert_allclose(images, from_fresh["best_images"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["synth_loss_first"], from_fresh["losses"][0], rtol=1e-6)
    assert abs(float(from_meta["losses"][0] - from_fresh["losses"][0])) > 1e-3


def test_synthesize_updates_bn_memory_from_last_step():
    synth, tv, sv, memory = make_synth("first_order", bn_momentum=0.9)
    state = synth.init(jax.random.PRNGKey(1))
    rng = jax.random.PRNGKey(2)
    _, memory1, _, _ = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, 0.0)
    assert bool(memory1.ready) and not bool(memory.ready)
    # Independently: the teacher's BN input statistics of the images of the last inner step (the
    # generator after g_steps - 1 plain-loop steps) and of the first one.
    z0, targets, inner_rng = inner_args(synth, rng)

    def stats_after(num_steps):
        _, inner, _ = manual_inner(
            synth,
            state.params,
            state.batch_stats,
            z0,
            targets,
            inner_rng,
            tv,
            sv,
            memory,
            0.0,
            num_steps=num_steps,
        )
        images = synth.generate(inner["g"], state.batch_stats, inner["z"])
        inputs = synth.objective.augment(jax.random.fold_in(inner_rng, num_steps), images)
        _, records = losses.capture_bn_inputs(synth.objective.teacher, tv, inputs, train=False)
        return [r.mean for r in records], [r.var for r in records]

    last, first = stats_after(synth.g_steps - 1), stats_after(0)
    for got, want, other in zip(
        memory1.means + memory1.vars, last[0] + last[1], first[0] + first[1]
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # the first update stores them
        assert float(jnp.abs(want - other).max()) > 1e-3  # the first step's statistics differ


def test_bad_synthesizer_config():
    with pytest.raises(ValueError, match="g_steps must be >= 1, got 0"):
        make_synth("first_order", g_steps=0)
    with pytest.raises(ValueError, match="'second_order'.*exact"):
        make_synth("second_order")


def test_reset_layers():
    synth, *_ = make_synth("first_order")
    params = synth.init(jax.random.PRNGKey(0)).params
    reset = base.reset_layers(params, jax.random.PRNGKey(1), ("l1", "bn0"), 0.02)
    assert float(jnp.abs(reset["l1"]["bias"]).max()) == 0.0
    assert abs(float(reset["l1"]["kernel"].std()) - 0.02) < 0.01
    assert abs(float(reset["bn0"]["scale"].mean()) - 1.0) < 0.02
    np.testing.assert_array_equal(reset["conv1"]["kernel"], params["conv1"]["kernel"])
    with pytest.raises(ValueError, match="'nope' not in the generator"):
        base.reset_layers(params, jax.random.PRNGKey(1), ("nope",), 0.02)


# -- DeepInversion --------------------------------------------------------------------------------
def test_deepinversion_lowers_the_loss_and_stays_in_range():
    teacher, tv, student, sv = tiny.make_models(jax.random.PRNGKey(0))
    synth = deepinversion.DeepInversionSynthesizer(
        objective=tiny.make_objective(teacher, student),
        num_classes=tiny.NUM_CLASSES,
        batch_size=8,
        image_shape=tiny.IMAGE_SHAPE,
        steps=30,
        lr=0.1,
        betas=(0.5, 0.99),
        mean=(0.5,),
        std=(0.25,),
    )
    memory = init_bn_memory(synth.objective, tv, tiny.IMAGE_SHAPE)
    _, _, images, metrics = jax.jit(synth.synthesize)(
        {}, memory, tv, sv, jax.random.PRNGKey(1), 0.0
    )
    assert float(metrics["synth_best_loss"]) < 0.95 * float(metrics["synth_loss_first"])
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        dataclasses.replace(synth, steps=0)


def test_synthesis_compiles_once_across_calls():
    import chex

    synth, tv, sv, memory = make_synth("first_order", bn_momentum=0.9)
    state = synth.init(jax.random.PRNGKey(1))
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def call(state, memory, rng, adv):
        return synth.synthesize(state, memory, tv, sv, rng, adv)

    for i in range(3):  # adversarial weight switched on after "warmup": no retrace
        state, memory, _, _ = call(state, memory, jax.random.PRNGKey(i), jnp.float32(0.5 * (i > 0)))


# -- the original's behaviour, wired ---------------------------------------------------------------
def test_adv_start_epochs():
    # FastDFKD's `ep >= warmup` with ep counted from 1: one call before KD (epoch warmup - 1).
    assert base.adv_start_epoch("before_kd", 20) == 19
    assert base.adv_start_epoch("before_kd", 0) == 0
    assert base.adv_start_epoch("first_call", 20) == 0
    assert base.adv_start_epoch("with_kd", 20) == 20
    with pytest.raises(ValueError, match="Unknown synthesis.adv_start 'never'"):
        base.adv_start_epoch("never", 20)
    synth, *_ = make_synth("first_order")
    synth = dataclasses.replace(synth, adv=1.1, adv_start_epoch=4)
    assert [synth.adv_weight(e) for e in (3, 4, 5)] == [0.0, 1.1, 1.1]


def test_objective_student_bn_and_clamped_jsdiv_are_the_originals():
    """DeepInversion's loss: bn * (L_bn(teacher) - 0.001 L_bn(student)) + oh CE - jsdiv_clamped,
    the terms computed here from the phase-1 functions (tested against the original's formulas)."""
    teacher, tv, student, sv = tiny.make_models(jax.random.PRNGKey(0))
    sv = tiny.randomize_batch_stats(sv, jax.random.PRNGKey(5))
    obj = dataclasses.replace(
        tiny.make_objective(teacher, student),
        bn=10.0,
        oh=1.0,
        adversarial="jsdiv_clamped",
        student_bn=baseline_losses.DEEPINV_STUDENT_BN,
    )
    images = jax.random.uniform(jax.random.PRNGKey(1), (6, *tiny.IMAGE_SHAPE))
    targets = jnp.array([0, 1, 2, 0, 1, 2])
    memory = init_bn_memory(obj, tv, tiny.IMAGE_SHAPE)
    loss, (_, parts) = obj(images, targets, jax.random.PRNGKey(2), tv, sv, memory, 0.7)
    t_logits, t_records = losses.capture_bn_inputs(teacher, tv, images, train=False)
    s_logits, s_records = losses.capture_bn_inputs(student, sv, images, train=False)
    want_bn = baseline_losses.deepinversion_bn_loss(t_records, s_records, 0.001)
    want_adv = -baseline_losses.jsdiv_clamped(s_logits, t_logits, 3.0)
    want = 10.0 * want_bn + losses.one_hot_loss(t_logits, targets) + 0.7 * want_adv
    np.testing.assert_allclose(parts["loss_bn"], want_bn, rtol=1e-6)
    np.testing.assert_allclose(parts["loss_adv"], want_adv, rtol=1e-6)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    # The student's term is there (and subtracted): without it the BN loss is larger.
    plain = dataclasses.replace(obj, student_bn=0.0)
    _, (_, plain_parts) = plain(images, targets, jax.random.PRNGKey(2), tv, sv, memory, 0.7)
    assert float(plain_parts["loss_bn"]) > float(parts["loss_bn"]) + 1e-4
    with pytest.raises(ValueError, match="Unknown adversarial loss 'l1'"):
        objective.adversarial_term("l1", s_logits, t_logits, 1.0)


def test_whole_batch_flip_is_wired_into_the_jitter_augment():
    cfg = dict(kind="jitter", padding=1, flip=True, jitter=1, flip_whole_batch=True)
    images = jax.random.uniform(jax.random.PRNGKey(0), (16, 4, 4, 1))
    make = objective.make_synthesis_augment
    import ml_collections

    whole = make(ml_collections.ConfigDict(cfg), (0.5,), (0.25,))
    per_sample = make(ml_collections.ConfigDict(dict(cfg, flip_whole_batch=False)), (0.5,), (0.25,))
    flipped_some = False
    for seed in range(6):
        rng = jax.random.PRNGKey(seed)
        want = augment.normalize(
            baseline_augment.jitter_and_flip(rng, images, 1, True), (0.5,), (0.25,)
        )
        np.testing.assert_allclose(whole(rng, images), want, rtol=1e-6)
        # Per-sample flips (the other setting) mix flipped and unflipped images in one batch.
        got = per_sample(rng, images)
        flipped_some |= not np.allclose(got, want)
    assert flipped_some


def make_deepinv(return_iterate, steps=6):
    teacher, tv, student, sv = tiny.make_models(jax.random.PRNGKey(0))
    synth = deepinversion.DeepInversionSynthesizer(
        objective=tiny.make_objective(teacher, student),
        num_classes=tiny.NUM_CLASSES,
        batch_size=8,
        image_shape=tiny.IMAGE_SHAPE,
        steps=steps,
        lr=0.1,
        betas=(0.5, 0.99),
        mean=(0.5,),
        std=(0.25,),
        return_iterate=return_iterate,
    )
    return synth, tv, sv, init_bn_memory(synth.objective, tv, tiny.IMAGE_SHAPE)


def test_deepinversion_returns_the_last_or_the_best_iterate():
    """'last' (the original) is the pixels after the final update and clip; 'best' the
    lowest-loss iterate (evaluated before its update)."""
    rng, adv = jax.random.PRNGKey(1), jnp.float32(0.0)
    results = {}
    for which in ("best", "last"):
        synth, tv, sv, memory = make_deepinv(which)
        _, _, images, metrics = jax.jit(synth.synthesize)({}, memory, tv, sv, rng, adv)
        results[which] = images
    carry = synth.begin({}, rng, tv)
    carry = jax.jit(synth.advance, static_argnums=(6,))(carry, memory, tv, sv, adv, 0, synth.steps)
    last = jnp.clip(augment.denormalize(carry.u, (0.5,), (0.25,)), 0.0, 1.0)
    np.testing.assert_allclose(results["last"], last, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["best"], carry.best_images, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(results["best"] - results["last"]).max()) > 1e-3
    with pytest.raises(ValueError, match="return_iterate 'worst'"):
        make_deepinv("worst")


def test_sequential_strategy_trains_one_generator_in_place():
    """The original's fast.py: the inner loop starts from the persistent generator, and its result
    G'_K (not the best iterate's) is the next batch's start; no meta step, no meta state."""
    synth, tv, sv, memory = make_synth("first_order", strategy="sequential")
    state = synth.init(jax.random.PRNGKey(1))
    assert state.opt_state == ()
    rng, adv = jax.random.PRNGKey(2), jnp.asarray(0.5)
    new_state, _, _, _ = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, adv)
    z0, targets, inner_rng = inner_args(synth, rng)
    _, aux = jax.jit(synth.inner_run)(
        state.params, state.batch_stats, z0, targets, inner_rng, tv, sv, memory, adv
    )
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(aux["adapted"])):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert synth.meta_gradient_label == "none"
    # The meta strategy's generator after the same call is not G'_K.
    meta, *_ = make_synth("first_order")
    meta_state, _, _, _ = jax.jit(meta.synthesize)(
        state.replace(opt_state=meta.init(jax.random.PRNGKey(1)).opt_state),
        memory,
        tv,
        sv,
        rng,
        adv,
    )
    assert not np.allclose(meta_state.params["conv1"]["kernel"], aux["adapted"]["conv1"]["kernel"])


def test_reset_l0_before_its_epoch_and_with_the_originals_bn_scale():
    synth, *_ = make_synth("first_order")
    synth = dataclasses.replace(synth, reset_l0_epoch=3, reset_layers=("l1", "bn0"), reset_std=0.02)
    assert synth.reset_bn_scale_mean == 0.0  # the original's draw is the default
    state = synth.init(jax.random.PRNGKey(1))
    rng = jax.random.PRNGKey(4)
    assert synth.start_epoch(state, 2, rng) is state
    reset = synth.start_epoch(state, 3, rng)
    want = base.reset_layers(state.params, rng, ("l1", "bn0"), 0.02, scale_mean=0.0)
    for got, exp in zip(jax.tree.leaves(reset.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, exp, rtol=1e-6)
    # The original's reset_l0 draws the BatchNorm scale like the Linear kernel: N(0, 0.02).
    scale = np.asarray(reset.params["bn0"]["scale"])
    draw = 0.02 * jax.random.normal(jax.random.fold_in(rng, 1), scale.shape)  # "bn0" is layer 1
    np.testing.assert_allclose(scale, draw, rtol=1e-6)
    np.testing.assert_array_equal(reset.params["bn0"]["bias"], 0.0)
    # The research option 1.0 is the same draw shifted to the usual BatchNorm start.
    usual = dataclasses.replace(synth, reset_bn_scale_mean=1.0).start_epoch(state, 3, rng)
    np.testing.assert_allclose(usual.params["bn0"]["scale"], scale + 1.0, atol=1e-6)
    # Strategies without a meta generator never reset (the original's fast.py has no reset).
    sequential = dataclasses.replace(synth, strategy="sequential")
    assert sequential.start_epoch(state, 3, rng) is state


def test_normalized_sgd_moves_each_tensor_by_lr_in_rms():
    tx = inner_optimizers.normalized_sgd(0.1)
    grads = {"a": jnp.array([3.0, -4.0]), "b": jnp.zeros(3)}
    updates, _ = tx.update(grads, tx.init(grads))
    rms = np.sqrt((9 + 16) / 2)
    np.testing.assert_allclose(updates["a"], [-0.1 * 3 / rms, 0.1 * 4 / rms], rtol=1e-6)
    np.testing.assert_array_equal(updates["b"], jnp.zeros(3))  # a zero gradient stays a zero step
