"""Sharded runs equal single-device runs; placement errors; checkpoints across device counts.

The session has 8 simulated CPU devices (tests/conftest.py); the meshes are built from them
explicitly, so the tests run the same on a machine whose default backend is a GPU. Each test
compiles the real step
(`Synthesizer.compile_call`, `distill.compile_kd_step`, `teacher.compile_train_step`: the jobs'
own compile functions, with the shardings the jobs use), on a
mesh of 8 devices and on a mesh of 1, and compares the results. Sharded reductions add in another
order, so values agree to float32 rounding (stated tolerances), not bit for bit.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fastdfkd_jax import checkpoint, compilation, distill, optim, sharding, state, teacher
from fastdfkd_jax.synthesis import deepinversion
from fastdfkd_jax.synthesis.objective import make_synthesis_augment
from tests.fastdfkd_jax import tiny

BATCH = 16  # global batch: 2 rows per device on 8 devices
POOL = 32
AUG = ml_collections.ConfigDict(dict(kind="crop", padding=1, flip=True))
MEAN, STD = (0.5,), (0.25,)
# float32 results of a sharded and an unsharded run differ only by the order of additions.
RTOL, ATOL = 1e-4, 1e-5


def mesh_of(n, devices=None):
    """A mesh of `n` of the simulated CPU devices (whatever the default backend is)."""
    return sharding.make_mesh(sharding.mesh_config(data=n), devices=devices or jax.devices("cpu"))


@functools.cache
def models():
    return tiny.make_models(jax.random.PRNGKey(0))


def make_synthesizer(mesh, method="fast", meta_gradient="first_order"):
    t, _, s, _ = models()
    batch_sharding = sharding.batch_sharding(mesh)
    if method == "cmi_chunked":  # host-driven chunks of one step: begin, advance x 2, finish
        synth, _, _ = tiny.make_cmi(2, chunk_steps=1, batch_size=BATCH, bank_size=2 * BATCH,
                                    batch_sharding=batch_sharding)  # fmt: skip
        return synth
    if method == "deepinversion":
        return deepinversion.DeepInversionSynthesizer(
            objective=tiny.make_objective(t, s, bn_momentum=0.9),
            num_classes=tiny.NUM_CLASSES,
            batch_size=BATCH,
            image_shape=tiny.IMAGE_SHAPE,
            steps=3,
            lr=0.1,
            betas=(0.5, 0.99),
            mean=MEAN,
            std=STD,
            batch_sharding=batch_sharding,
        )
    return tiny.make_fast_synthesizer(
        t,
        s,
        meta_gradient=meta_gradient,
        g_steps=1 if meta_gradient == "exact" else 2,
        batch_size=BATCH,
        bn_momentum=0.9,
        batch_sharding=batch_sharding,
    )


def make_state(synthesizer, tx):
    """A run state whose pool already holds POOL random images (so KD steps have data)."""
    t, tv, s, _ = models()
    return state.create_dfkd_state(
        synthesizer,
        s,
        tx,
        tv,
        image_shape=tiny.IMAGE_SHAPE,
        pool_capacity=POOL,
        student_rng=jax.random.PRNGKey(2),
        synthesizer_rng=jax.random.PRNGKey(1),
        pool_images=jax.random.uniform(jax.random.PRNGKey(5), (POOL, *tiny.IMAGE_SHAPE)),
    )


def student_tx():
    return optax.sgd(0.1, momentum=0.9)


def compile_synthesis(mesh, synthesizer, state):
    _, tv, _, _ = models()
    state = sharding.place_state(state, mesh)
    tv = sharding.replicate(tv, mesh)
    fn, _ = synthesizer.compile_call(
        state, tv, jax.random.PRNGKey(0), jnp.float32(0.5), mesh=mesh, donate=False
    )
    return fn, state, tv


def compile_kd(mesh, state, synthesizer):
    t, tv, s, _ = models()
    state = sharding.place_state(state, mesh)
    tv = sharding.replicate(tv, mesh)
    fn, _ = distill.compile_kd_step(
        state,
        tv,
        jax.random.PRNGKey(0),
        mesh=mesh,
        donate=False,
        synthesizer=synthesizer,
        student=s,
        teacher=t,
        tx=student_tx(),
        batch_size=BATCH,
        temperature=4.0,
        augment=make_synthesis_augment(AUG, MEAN, STD),
    )
    return fn, state, tv


flops = compilation.flops


def assert_trees_close(a, b, rtol=RTOL, atol=ATOL):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def run_synthesis(n, method, meta_gradient, calls=2):
    mesh = mesh_of(n)
    synthesizer = make_synthesizer(mesh, method, meta_gradient)
    fn, state, tv = compile_synthesis(mesh, synthesizer, make_state(synthesizer, student_tx()))
    outputs = []
    for i in range(calls):
        state, images, metrics = fn(state, tv, jax.random.PRNGKey(10 + i), jnp.float32(0.5))
        outputs.append((images, metrics))
    return fn, synthesizer, state, outputs


# -- equality of sharded and single-device steps ---------------------------------------------------
@pytest.mark.parametrize(
    "method, meta_gradient",
    [("fast", "exact"), ("fast", "first_order"), ("deepinversion", "first_order")],
)
def test_synthesis_call_on_8_devices_equals_1(method, meta_gradient, fast_compile):
    fn8, synth8, state8, out8 = run_synthesis(8, method, meta_gradient)
    fn1, synth1, state1, out1 = run_synthesis(1, method, meta_gradient)
    for (images8, metrics8), (images1, metrics1) in zip(out8, out1):
        assert images8.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)
        assert len(images8.sharding.device_set) == 8
        np.testing.assert_allclose(images8, images1, rtol=RTOL, atol=ATOL)
        assert_trees_close(metrics8, metrics1)
    assert_trees_close(state8.bn_memory, state1.bn_memory)
    assert_trees_close(state8.pool, state1.pool)
    if method == "fast":
        # The meta generator after two meta steps, compared by what it computes: its parameters
        # include biases right before a BatchNorm whose gradient is zero up to rounding, and Adam
        # turns rounding noise into +-lr steps that change nothing downstream.
        z = jax.random.normal(jax.random.PRNGKey(3), synth1.latent_shape())
        gen = jax.jit(synth1.generate)
        on_one = jax.device_put(
            (state8.synthesizer.params, state8.synthesizer.batch_stats, z),
            sharding.replicated(mesh_of(1)),
        )
        g8 = gen(*on_one)
        g1 = gen(state1.synthesizer.params, state1.synthesizer.batch_stats, z)
        np.testing.assert_allclose(g8, g1, rtol=RTOL, atol=ATOL)
    # Data-parallel, not replicated: each device computes about 1/8 of the work.
    assert flops(fn8) < 0.3 * flops(fn1)


def test_chunked_synthesis_on_8_devices_equals_1(fast_compile):
    """A method driven in chunks from the host keeps its carry where `begin` put it: compiled
    alone, `advance` would choose other shardings on 8 devices and refuse `begin`'s carry."""
    _, _, state8, out8 = run_synthesis(8, "cmi_chunked", "first_order")
    _, _, state1, out1 = run_synthesis(1, "cmi_chunked", "first_order")
    for (images8, metrics8), (images1, metrics1) in zip(out8, out1, strict=True):
        np.testing.assert_allclose(images8, images1, rtol=RTOL, atol=ATOL)
        assert_trees_close(metrics8, metrics1)
    assert_trees_close(state8.synthesizer.bank, state1.synthesizer.bank)


def test_student_step_on_8_devices_equals_1(fast_compile):
    results = {}
    for n in (8, 1):
        mesh = mesh_of(n)
        synthesizer = make_synthesizer(mesh)
        fn, state, tv = compile_kd(mesh, make_state(synthesizer, student_tx()), synthesizer)
        losses = []
        for i in range(2):
            state, metrics = fn(state, tv, jax.random.PRNGKey(20 + i))
            losses.append(metrics["kd_loss"])
        results[n] = (fn, state.student, losses)
    assert_trees_close(results[8][1], results[1][1])
    np.testing.assert_allclose(results[8][2], results[1][2], rtol=RTOL, atol=ATOL)
    assert flops(results[8][0]) < 0.3 * flops(results[1][0])


def test_teacher_step_on_8_devices_equals_1(fast_compile):
    t, _, _, _ = models()
    tx = optax.adam(1e-2)
    batch = {
        "image": np.asarray(jax.random.uniform(jax.random.PRNGKey(7), (BATCH, *tiny.IMAGE_SHAPE))),
        "label": np.arange(BATCH, dtype=np.int32) % tiny.NUM_CLASSES,
    }
    results = {}
    for n in (8, 1):
        mesh = mesh_of(n)
        tstate = sharding.place_state(
            state.init_classifier(t, tx, jax.random.PRNGKey(1), tiny.IMAGE_SHAPE), mesh
        )
        # The same compiled step as teacher.train_and_evaluate.
        step, _ = teacher.compile_train_step(
            tstate,
            model=t,
            tx=tx,
            aug=AUG,
            mean=MEAN,
            std=STD,
            batch_size=BATCH,
            image_shape=tiny.IMAGE_SHAPE,
            mesh=mesh,
            donate=False,
        )
        placed = sharding.put_batch(batch, mesh)
        history = []
        for i in range(2):
            tstate, metrics = step(tstate, placed, jax.random.PRNGKey(30 + i))
            history.append(metrics)
        results[n] = (tstate, history)
    assert_trees_close(results[8], results[1])


def test_random_draws_do_not_depend_on_sharding():
    assert jax.config.jax_threefry_partitionable
    mesh = mesh_of(8)
    draw = functools.partial(jax.random.normal, shape=(BATCH, 3))
    sharded = jax.jit(draw, out_shardings=sharding.batch_sharding(mesh))(jax.random.PRNGKey(0))
    whole = jax.jit(draw, out_shardings=sharding.replicated(mesh_of(1)))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(sharded, whole)


# -- checkpoints across device counts -------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 4])
def test_checkpoint_from_8_devices_restores_onto_fewer(tmp_path, n):
    mesh8 = mesh_of(8)
    synthesizer = make_synthesizer(mesh8)
    saved = sharding.place_state(make_state(synthesizer, student_tx()), mesh8)
    assert len(saved.pool.images.sharding.device_set) == 8
    with checkpoint.make_manager(str(tmp_path), max_to_keep=1) as manager:
        checkpoint.save(manager, 3, saved)
    mesh = mesh_of(n)
    target = sharding.place_state(jax.tree.map(jnp.zeros_like, jax.device_get(saved)), mesh)
    with checkpoint.make_manager(str(tmp_path), max_to_keep=1) as manager:
        restored, step = checkpoint.restore_latest(manager, target)
    assert step == 3
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(saved), strict=True):
        assert got.sharding.mesh.devices.size == n
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert restored.pool.images.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)


# -- placement helpers and bad input --------------------------------------------------------------
def test_mesh_larger_than_the_devices_present_names_both_numbers():
    with pytest.raises(ValueError, match=r"mesh.data=16 asks for more devices than the 8 present"):
        mesh_of(16)
    with pytest.raises(ValueError, match="mesh.data must be -1 or >= 1, got 0"):
        mesh_of(0)
    assert sharding.data_size(mesh_of(-1)) == 8
    # The default: every device of the default backend.
    assert sharding.data_size(sharding.make_mesh(sharding.mesh_config())) == jax.device_count()


def test_batch_that_does_not_divide_names_both_numbers():
    mesh = mesh_of(8)
    with pytest.raises(
        ValueError, match=r"kd.batch_size=12 does not divide by the data axis size 8"
    ):
        sharding.check_batch_divides(12, mesh, "kd.batch_size")
    with pytest.raises(ValueError, match="batch_size=20 .* size 8"):
        sharding.per_device_batch(20, mesh)
    assert sharding.per_device_batch(24, mesh) == 3


def test_batch_placement_and_process_rows():
    mesh = mesh_of(4)
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    placed = sharding.put_batch({"x": x}, mesh)["x"]
    assert [s.data.shape for s in placed.addressable_shards] == [(2, 3)] * 4
    np.testing.assert_array_equal(placed, x)
    host = sharding.to_host({"x": placed})["x"]
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, x)
    # One process holds every row, and reads the whole evaluation split.
    assert sharding.process_rows(8, mesh) == slice(0, 8)
    assert sharding.split_share(10) == (slice(0, 10), 10)
    tree = {"pool": {"images": jnp.zeros((8, 2)), "size": jnp.zeros(())}, "params": jnp.ones(3)}
    specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(tree, mesh))
    assert specs["pool"]["images"] == jax.sharding.PartitionSpec("data")
    assert specs["params"] == specs["pool"]["size"] == jax.sharding.PartitionSpec()


def test_learning_rate_scaling():
    cfg = ml_collections.ConfigDict(
        dict(learning_rate=0.1, end_learning_rate=0.01, lr_scaling="none", reference_batch_size=0)
    )
    assert optim.scale_learning_rate(cfg, 1024) is cfg  # 'none' keeps today's behaviour
    cfg.lr_scaling, cfg.reference_batch_size = "linear", 256
    scaled = optim.scale_learning_rate(cfg, 1024)
    assert scaled.learning_rate == pytest.approx(0.4)
    assert scaled.end_learning_rate == pytest.approx(0.04)
    assert cfg.learning_rate == 0.1
    cfg.reference_batch_size = 0
    with pytest.raises(ValueError, match="reference_batch_size >= 1, got 0"):
        optim.scale_learning_rate(cfg, 1024)
    cfg.lr_scaling = "sqrt"
    with pytest.raises(ValueError, match="'sqrt'"):
        optim.scale_learning_rate(cfg, 1024)
