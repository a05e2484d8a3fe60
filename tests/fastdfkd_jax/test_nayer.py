"""NAYER: the noisy-layer generator, the call (fresh noisy layers, a body carried over), the
g_life rebuilds, the label embeddings, the batch checks, a run in the trainer, sharded calls."""

import logging
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import main, methods, sharding, synthesis
from fastdfkd_jax.models import noisy_generator
from fastdfkd_jax.synthesis import fastdfkd, label_embeddings, nayer
from tests.conftest import load_config
from tests.fastdfkd_jax import test_sharding as ts
from tests.fastdfkd_jax import tiny

pytestmark = pytest.mark.usefixtures("fast_compile")

GROUPS = 2  # groups of one image per class: a batch of 2 * 3 images
DIM = 5  # embedding width


def make_synthesizer(batch_sharding=None, g_steps=2, warmup=2, g_life=3, groups=GROUPS):
    teacher, _, student, _ = ts.models()
    generator = noisy_generator.NoisyLayerGenerator(
        num_classes=tiny.NUM_CLASSES,
        groups=groups,
        noisy_width=6,
        ngf=2,
        img_size=tiny.IMAGE_SHAPE[0],
        nc=tiny.IMAGE_SHAPE[-1],
    )
    base = fastdfkd.FastSynthesizer(
        generator=generator,
        objective=tiny.make_objective(teacher, student, bn_momentum=0.9),
        num_classes=tiny.NUM_CLASSES,
        batch_size=groups * tiny.NUM_CLASSES,
        g_steps=g_steps,
        lr_g=0.05,
        lr_z=0.0,
        meta_lr=0.0,
        inner_betas=(0.5, 0.999),
        meta_betas=(0.5, 0.999),
        inner_eps_root=0.0,
        meta_gradient="first_order",
        reptile_factor=1.0,
        strategy="sequential",
        remat=False,
        batch_sharding=batch_sharding,
        adv=1.0,
    )
    table = label_embeddings.load("random", tiny.NUM_CLASSES, DIM, seed=0)
    return nayer.NayerSynthesizer(
        base=base, table=table, table_source="random", g_life=g_life, warmup=warmup
    )


_COMPILED = {}


def call(synth, state, rng=1):
    """One synthesis call from `state` with a fresh BN memory (compiled once per synthesizer)."""
    _, tv, _, sv = ts.models()
    memory = synth.init_bn_memory(tv, tiny.IMAGE_SHAPE)
    if synth not in _COMPILED:
        _COMPILED[synth] = jax.jit(synth.synthesize)
    return _COMPILED[synth](state, memory, tv, sv, jax.random.PRNGKey(rng), 1.0)


def test_noisy_layers_apply_one_dense_per_group():
    """Row g * C + c goes through group g's layer: equal to a loop over the groups."""
    gen = noisy_generator.NoisyLayerGenerator(
        num_classes=3, groups=2, noisy_width=4, ngf=2, img_size=4, nc=1
    )
    table = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    x = noisy_generator.group_embeddings(table, 2)
    np.testing.assert_array_equal(x[3:], table)
    np.testing.assert_array_equal(noisy_generator.group_targets(3, 2), [0, 1, 2, 0, 1, 2])
    variables = gen.init(jax.random.PRNGKey(1), x)
    params = variables["params"]
    captured = {}

    def capture(next_fun, args, kwargs, context):
        if context.module.name == "l1":  # the body's first Dense: its input is the noisy output
            captured["noisy_out"] = args[0]
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(capture):
        gen.apply(variables, x, mutable=["batch_stats"])
    mean, var = x.mean(0), x.var(0)
    normed = (x - mean) / jnp.sqrt(var + 1e-5)  # BN over the batch, scale 1 and bias 0 at init
    expected = jnp.concatenate(
        [
            normed[g * 3 : (g + 1) * 3] @ params["noisy_kernel"][g] + params["noisy_bias"][g]
            for g in range(2)
        ]
    )
    np.testing.assert_allclose(captured["noisy_out"], expected, rtol=1e-5, atol=1e-5)


def test_redraw_gives_standard_normal_kernels_and_zero_biases():
    params = {
        "noisy_kernel": jnp.full((4, 64, 64), 3.0),
        "noisy_bias": jnp.ones((4, 64)),
        "body": {"w": jnp.ones(3)},
    }
    fresh = noisy_generator.redraw_noisy_layers(params, jax.random.PRNGKey(0))
    kernel = np.asarray(fresh["noisy_kernel"])
    assert abs(kernel.mean()) < 0.02 and abs(kernel.std() - 1.0) < 0.02  # 16384 draws of N(0, 1)
    np.testing.assert_array_equal(fresh["noisy_bias"], 0.0)
    assert fresh["body"] is params["body"]
    again = noisy_generator.redraw_noisy_layers(params, jax.random.PRNGKey(1))
    assert not np.allclose(again["noisy_kernel"], kernel)


def test_a_call_redraws_the_noisy_layers_and_carries_the_body_over():
    synth = make_synthesizer()
    state = synth.init(jax.random.PRNGKey(0))
    new, _, images, metrics = call(synth, state)
    assert images.shape == (GROUPS * tiny.NUM_CLASSES, *tiny.IMAGE_SHAPE)
    assert np.isfinite(metrics["synth_best_loss"])
    old_body = {k: v for k, v in state.generator.params.items() if "noisy" not in k}
    new_body = {k: v for k, v in new.generator.params.items() if "noisy" not in k}
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), old_body, new_body)
    assert any(jax.tree.leaves(changed))  # trained in place: the next call starts here
    # The previous noisy layers do not matter: a state that differs only in them gives the same
    # call; one that differs in the body does not.
    params = state.generator.params
    other_noise = dict(params, noisy_kernel=params["noisy_kernel"] + 1.0)
    same = call(synth, state.replace(generator=state.generator.replace(params=other_noise)))
    np.testing.assert_array_equal(same[2], images)
    other_body = jax.tree.map(lambda x: x * 1.1, params)
    other_body = dict(other_body, noisy_kernel=params["noisy_kernel"])
    differs = call(synth, state.replace(generator=state.generator.replace(params=other_body)))
    assert not np.allclose(differs[2], images)
    # The embeddings are the input, not a latent: they never move.
    np.testing.assert_array_equal(new.embeddings, state.embeddings)


def test_the_generator_is_rebuilt_every_g_life_epochs():
    """The original's test, (e - warmup) % g_life == 0 or e % g_life == 0: with warmup 2 and
    g_life 3, epochs 0, 2, 3, 5, 6, 8, 9; a rebuild is a fresh generator, elsewhere it is kept."""
    synth = make_synthesizer(warmup=2, g_life=3)
    assert [e for e in range(10) if synth.rebuild_due(e)] == [0, 2, 3, 5, 6, 8, 9]
    assert [e for e in range(45) if make_synthesizer(warmup=20, g_life=10).rebuild_due(e)] == [
        0, 10, 20, 30, 40,
    ]  # fmt: skip
    state = call(synth, synth.init(jax.random.PRNGKey(0)))[0]
    kept = synth.start_epoch(state, 1, jax.random.PRNGKey(5))
    assert kept is state
    rebuilt = synth.start_epoch(state, 3, jax.random.PRNGKey(5))
    fresh = synth.init_generator(jax.random.PRNGKey(5))
    # The initializer's draw, compiled here and eagerly there: equal up to float32 rounding.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        rebuilt.generator,
        fresh,
    )
    trained = state.generator.params["body"]["l1"]["kernel"]
    assert not np.allclose(rebuilt.generator.params["body"]["l1"]["kernel"], trained)
    np.testing.assert_array_equal(rebuilt.embeddings, state.embeddings)


def test_calls_per_epoch_while_warming_up_and_after():
    synth = make_synthesizer(warmup=2)
    assert [synth.calls_per_round(e) for e in range(4)] == [10, 10, 2, 2]
    assert synth.max_calls_per_round == 10
    config = load_config("dfkd_digits.py:nayer")  # 40 epochs, warmup 5, batches of 200
    assert synthesis.calls_in_run(config) == 5 * 10 + 35 * 2
    assert config.pool.capacity == 120 * 200  # every image kept, as the original's pool
    assert config.synthesis.batch_size == 200  # 128 * 400 / 256, whole groups of 10


def test_a_schedule_overridden_after_the_preset_is_told_its_pool_overwrites_images():
    """The preset sizes the pool to its own schedule; 20 more epochs (2 calls of 200 each) make
    32000 images in all, 8000 more than its 24000 keep: the run says so, naming both numbers."""
    config = load_config("dfkd_digits.py:nayer")
    assert synthesis.pool_overflow(config) is None
    config.epochs += 20
    note = synthesis.pool_overflow(config)
    assert "pool.capacity=24000" in note and "32000 images" in note
    config.pool.capacity = 32000
    assert synthesis.pool_overflow(config) is None


def test_the_first_step_minimizes_the_inversion_loss_of_the_grouped_batch():
    """The call's first loss is the objective of the generator's images for the class-ordered
    targets, with the freshly drawn noisy layers (the same draw the call makes)."""
    synth = make_synthesizer(g_steps=1)
    state = synth.init(jax.random.PRNGKey(0))
    _, tv, _, sv = ts.models()
    memory = synth.init_bn_memory(tv, tiny.IMAGE_SHAPE)
    rng = jax.random.PRNGKey(1)
    _, _, _, metrics = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, 1.0)
    noise_rng, inner_rng = jax.random.split(rng)
    params = noisy_generator.redraw_noisy_layers(state.generator.params, noise_rng)
    images = synth.base.generate(
        params, state.generator.batch_stats, synth.inputs(state.embeddings)
    )
    targets = noisy_generator.group_targets(tiny.NUM_CLASSES, GROUPS)
    loss, _ = synth.objective(
        images, targets, jax.random.fold_in(inner_rng, 0), tv, sv, memory, jnp.float32(1.0)
    )
    np.testing.assert_allclose(metrics["synth_loss_first"], loss, rtol=1e-5)


def test_label_embeddings(tmp_path):
    random = label_embeddings.load("random", 10, 512, seed=0)
    assert random.shape == (10, 512) and random.dtype == np.float32
    np.testing.assert_array_equal(random, label_embeddings.load("random", 10, 512, seed=0))
    assert not np.allclose(random, label_embeddings.load("random", 10, 512, seed=1))
    np.testing.assert_array_equal(label_embeddings.load("onehot", 4, 512, 0), np.eye(4))
    path = str(tmp_path / "le.npy")
    np.save(path, np.arange(20.0).reshape(10, 2))
    np.testing.assert_array_equal(label_embeddings.load(path, 10, 512, 0)[3], [6.0, 7.0])
    with pytest.raises(ValueError, match=r"has shape \(10, 2\); it needs one row per class: \(13"):
        label_embeddings.load(path, 13, 512, 0)
    with pytest.raises(ValueError, match="nor an existing .npy file"):
        label_embeddings.load(str(tmp_path / "missing.npy"), 10, 512, 0)


def test_the_batch_must_hold_whole_groups_on_every_device():
    assert nayer.groups_of(400, 10, 8) == 40
    with pytest.raises(
        ValueError, match=r"multiple of the 10 classes: synthesis.batch_size=16 on 1"
    ):
        nayer.groups_of(16, 10, 1)
    with pytest.raises(ValueError, match=r"batch_size=40 on 8 device\(s\) gives 5 per device"):
        nayer.groups_of(40, 10, 8)


@pytest.mark.slow
def test_nayer_runs_in_the_trainer(teacher_dir, tmp_path, caplog):
    config = load_config("dfkd_digits.py:nayer,runlocal")
    config.teacher.checkpoint = teacher_dir
    with caplog.at_level(logging.WARNING):
        summary = main.run(config, str(tmp_path))
    # runlocal's pool of 64 is smaller than the run's 6 batches of 20: the run says so.
    assert synthesis.pool_overflow(config) in caplog.messages
    assert summary["method"] == "nayer" and summary["synthesis_method"] == "nayer"
    # 3 epochs, warmup 1: 2 warmup calls, then 2 per epoch; what the benchmark counts too.
    assert summary["synthesis_calls"] == 6 == synthesis.calls_in_run(config)
    assert 0.0 <= summary["student_test_accuracy"] <= 1.0


@pytest.mark.slow
def test_nayer_call_on_8_devices_equals_1():
    outputs = {}
    for n in (8, 1):
        mesh = ts.mesh_of(n)
        synth = make_synthesizer(sharding.batch_sharding(mesh), groups=8)  # a group per device
        fn, state, tv = ts.compile_synthesis(mesh, synth, ts.make_state(synth, ts.student_tx()))
        state, images, metrics = fn(state, tv, jax.random.PRNGKey(10), jnp.float32(0.5))
        outputs[n] = (images, metrics, state.bn_memory)
    ts.assert_trees_close(outputs[8], outputs[1])


def test_presets_scale_the_original():
    cifar100 = load_config("dfkd_cifar.py:cifar100,nayer,wrn40_2-wrn16_2")
    assert (cifar100.synthesis.batch_size, cifar100.synthesis.nayer.g_steps) == (400, 40)
    assert (cifar100.epochs, cifar100.warmup, cifar100.kd.batch_size) == (120, 20, 512)
    assert (cifar100.synthesis.adv, cifar100.synthesis.bn, cifar100.synthesis.oh) == (
        methods.NAYER_WEIGHTS
    )
    assert cifar100.pool.capacity == 400 * (20 * 10 + 100 * 2)
    cifar10 = load_config("dfkd_cifar.py:cifar10,nayer")
    assert (cifar10.synthesis.batch_size, cifar10.synthesis.nayer.g_steps) == (400, 30)


def test_nayer_pickles_convert_and_nothing_else_unpickles(tmp_path):
    """A table pickled as NAYER's (a plain pickle of an fp16 tensor) converts exactly; a pickle
    that names any other function is refused before it runs."""
    torch = pytest.importorskip("torch")
    table = torch.randn(10, 512).half()
    path = tmp_path / "le.pickle"
    with open(path, "wb") as f:
        pickle.dump(table, f)
    np.testing.assert_array_equal(
        label_embeddings.from_nayer_pickle(str(path)), table.float().numpy()
    )
    evil = tmp_path / "evil.pickle"
    with open(evil, "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(pickle.UnpicklingError, match="refused posix.system|refused os.system"):
        label_embeddings.from_nayer_pickle(str(evil))
    assert label_embeddings.prompt("aquarium_fish") == "a image of aquarium fish"


class Payload:
    """A pickle that would run a shell command when loaded."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))
