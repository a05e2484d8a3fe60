"""FastDFKD with a meta-learned latent (the ImageNet variant): meta-updates of z and G, resets.

Each meta-update is compared with what a plain loop of the inner steps (`test_synthesis.
manual_inner`) and optax's Adam give; the exact meta-gradient of z with finite differences.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastdfkd_jax.synthesis import meta_latent
from fastdfkd_jax.synthesis.objective import init_bn_memory
from tests.fastdfkd_jax import tiny

META_LR_Z = 0.05

# Tiny models: compile without most XLA optimizations (both sides of every check alike).
pytestmark = pytest.mark.usefixtures("fast_compile")


def make(meta_gradient, reset_every=0, g_steps=3, dtype=jnp.float32):
    teacher, tv, student, sv = tiny.make_models(jax.random.PRNGKey(0), dtype)
    base = tiny.make_fast_synthesizer(
        teacher, student, meta_gradient=meta_gradient, g_steps=g_steps, batch_size=4
    )
    synth = meta_latent.MetaLatentSynthesizer(base, meta_lr_z=META_LR_Z, reset_every=reset_every)
    memory = init_bn_memory(synth.objective, tv, tiny.IMAGE_SHAPE)
    return synth, tv, sv, memory


def call_args(rng):
    """The targets and inner key that `synthesize` draws from `rng`."""
    _, y_rng, inner_rng = jax.random.split(rng, 3)
    return jax.random.randint(y_rng, (4,), 0, tiny.NUM_CLASSES), inner_rng


def adam_step(lr, grad, opt_state, params):
    updates, _ = optax.adam(lr, b1=0.5, b2=0.999).update(grad, opt_state, params)
    return optax.apply_updates(params, updates)


def assert_meaningful_close(got, want, grad, rtol=1e-4, atol=1e-6):
    """Equal where the meta-gradient is not rounding noise: Adam's first step is lr * sign(g)."""
    for a, b, g in zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(grad)):
        keep = np.abs(np.asarray(g)) > 1e-5
        np.testing.assert_allclose(np.asarray(a)[keep], np.asarray(b)[keep], rtol=rtol, atol=atol)


@pytest.mark.parametrize("meta_gradient", ["first_order", "reptile"])
def test_meta_updates_of_generator_and_latent(meta_gradient):
    synth, tv, sv, memory = make(meta_gradient)
    state = synth.init(jax.random.PRNGKey(1))
    rng, adv = jax.random.PRNGKey(2), jnp.asarray(0.5)
    new, _, images, metrics = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, adv)

    targets, inner_rng = call_args(rng)
    g = state.generator
    # inner_run's sums and adapted iterates equal a plain loop's (the next test and
    # test_synthesis.test_inner_run_matches_a_plain_loop).
    _, aux = jax.jit(synth.base.inner_run)(
        g.params, g.batch_stats, state.z, targets, inner_rng, tv, sv, memory, adv
    )
    if meta_gradient == "first_order":
        # z's meta-gradient is the sum of its inner gradients, not z's value as in the
        # original's ImageNet FOMAML.
        g_grad, z_grad = aux["grad_sum"], aux["grad_sum_z"]
        assert not np.allclose(z_grad, state.z, atol=1e-2)
    else:
        g_grad = jax.tree.map(lambda p, a: 3.0 * (p - a), g.params, aux["adapted"])
        z_grad = 3.0 * (state.z - aux["adapted_z"])
    assert_meaningful_close(new.generator.params, adam_step(0.01, g_grad, g.opt_state, g.params),
                            g_grad)  # fmt: skip
    np.testing.assert_allclose(
        new.z, adam_step(META_LR_Z, z_grad, state.z_opt_state, state.z), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(metrics["synth_loss_first"], aux["losses"][0], rtol=1e-5)
    assert int(new.calls) == 1 and float(metrics["latent_reset"]) == 0.0
    assert images.shape == (4, *tiny.IMAGE_SHAPE)


def test_first_order_latent_gradient_is_the_sum_of_inner_gradients():
    synth, tv, sv, memory = make("first_order")
    state = synth.init(jax.random.PRNGKey(1))
    targets, inner_rng = call_args(jax.random.PRNGKey(2))
    g, adv = state.generator, jnp.asarray(0.5)
    _, aux = jax.jit(synth.base.inner_run)(
        g.params, g.batch_stats, state.z, targets, inner_rng, tv, sv, memory, adv
    )
    # The plain loop, summing the z gradients of each inner step.
    tx = synth.base.inner_transform()
    inner = {"g": g.params, "z": state.z}
    opt_state, z_sum = tx.init(inner), jnp.zeros_like(state.z)

    def loss_fn(inner, k):
        images = synth.base.generate(inner["g"], g.batch_stats, inner["z"])
        rng = jax.random.fold_in(inner_rng, k)
        return synth.objective(images, targets, rng, tv, sv, memory, adv)[0]

    grad_fn, update = jax.jit(jax.grad(loss_fn)), jax.jit(tx.update)
    for k in range(synth.base.g_steps):
        grads = grad_fn(inner, k)
        z_sum = z_sum + grads["z"]
        updates, opt_state = update(grads, opt_state, inner)
        inner = optax.apply_updates(inner, updates)
    np.testing.assert_allclose(aux["grad_sum_z"], z_sum, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(aux["adapted_z"], inner["z"], rtol=1e-5, atol=1e-6)


def test_reset_schedule_matches_the_original_counter():
    """Reset before call c when c + 1 is a multiple of reset_every (the original's 1-based ep)."""
    synth, tv, sv, memory = make("reptile", reset_every=3, g_steps=1)
    state = synth.init(jax.random.PRNGKey(1))
    step = jax.jit(synth.synthesize)
    resets, z_before, z_after = [], [], []
    for c in range(6):
        z_before.append(state.z)
        state, memory, _, metrics = step(state, memory, tv, sv, jax.random.PRNGKey(10 + c), 0.0)
        resets.append(float(metrics["latent_reset"]))
        z_after.append(state.z)
    assert resets == [0, 0, 1, 0, 0, 1]
    # Without a reset a call starts at the previous call's meta z; a reset draws a fresh one and
    # restarts both Adams (a first Adam step moves every coordinate by about its learning rate).
    fresh, _ = synth.maybe_reset(
        synth.init(jax.random.PRNGKey(1)).replace(calls=jnp.int32(2)),
        jax.random.split(jax.random.PRNGKey(12), 3)[0],
    )
    z_start_2 = fresh.z
    step_size = np.abs(np.asarray(z_after[2]) - np.asarray(z_start_2))
    np.testing.assert_allclose(step_size, META_LR_Z, rtol=1e-3)
    assert not np.allclose(z_start_2, z_after[1])
    assert int(state.calls) == 6
    assert int(state.generator.opt_state[0].count) == 1  # restarted at call 5
    assert int(state.z_opt_state[0].count) == 1


def test_no_reset_keeps_the_latent_moving():
    synth, tv, sv, memory = make("reptile", reset_every=0, g_steps=1)
    state = synth.init(jax.random.PRNGKey(1))
    step = jax.jit(synth.synthesize)
    for c in range(3):
        state, memory, _, metrics = step(state, memory, tv, sv, jax.random.PRNGKey(10 + c), 0.0)
        assert float(metrics["latent_reset"]) == 0.0
    assert int(state.z_opt_state[0].count) == 3


@pytest.mark.slow  # 26 s; the first-order meta updates stay in the default suite
def test_exact_latent_meta_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        synth, tv, sv, memory = make("exact", g_steps=3, dtype=jnp.float64)
        tv, sv = jax.tree.map(lambda x: x.astype(jnp.float64), (tv, sv))
        state = synth.init(jax.random.PRNGKey(1))
        g = jax.tree.map(lambda x: x.astype(jnp.float64), state.generator)
        z0 = state.z.astype(jnp.float64)
        targets, inner_rng = call_args(jax.random.PRNGKey(2))
        adv = jnp.asarray(0.5, jnp.float64)

        def objective(z):
            return synth.base.inner_run(
                g.params, g.batch_stats, z, targets, inner_rng, tv, sv, memory, adv
            )[0]

        grad = jax.jit(jax.grad(objective))(z0)
        direction = jax.random.normal(jax.random.PRNGKey(3), z0.shape, jnp.float64)
        eps = 1e-6
        f = jax.jit(objective)
        numeric = (f(z0 + eps * direction) - f(z0 - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(grad, direction), numeric, rtol=1e-5)


def test_meta_latent_needs_the_meta_generator():
    synth, *_ = make("reptile")
    with pytest.raises(ValueError, match="strategy='meta'"):
        meta_latent.MetaLatentSynthesizer(
            dataclasses.replace(synth.base, strategy="independent"), meta_lr_z=0.1, reset_every=2
        )
    with pytest.raises(ValueError, match="reset_every"):
        meta_latent.MetaLatentSynthesizer(synth.base, meta_lr_z=0.1, reset_every=-1)


def test_adversarial_schedule_is_the_base_synthesizers():
    """The trainer asks the synthesizer for the adversarial weight of each epoch."""
    synth, *_ = make("reptile")
    base = dataclasses.replace(synth.base, adv=1.1, adv_start_epoch=2)
    synth = dataclasses.replace(synth, base=base)
    assert [synth.adv_weight(e) for e in range(4)] == [0.0, 0.0, 1.1, 1.1]
