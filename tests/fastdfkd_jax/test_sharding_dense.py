"""The ImageNet and NYUv2 paths on 8 simulated devices equal 1 device (as test_sharding.py does
for the CIFAR path): the meta-latent synthesizer across a latent reset, FastDFKD from a
segmentation teacher, and the per-pixel KD step, each compiled by the jobs' own functions.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fastdfkd_jax import distill, models, sharding, state
from fastdfkd_jax.data import base
from fastdfkd_jax.synthesis import fastdfkd, meta_latent
from fastdfkd_jax.synthesis.objective import make_synthesis_augment, objective_from_config
from tests.fastdfkd_jax import tiny
from tests.fastdfkd_jax.test_sharding import (
    AUG,
    assert_trees_close,
    flops,
    mesh_of,
    student_tx,
)

pytestmark = pytest.mark.usefixtures("fast_compile")

BATCH, POOL = 16, 32
K = 3
SEG_SHAPE = (8, 8, 3)
SEG_INFO = base.DatasetInfo("toy_seg", SEG_SHAPE, K, (0.5,) * 3, (0.25,) * 3, 4, 4,
                            task="segmentation")  # fmt: skip


@functools.cache
def seg_models():
    teacher = models.create_model("deeplabv3_tiny", num_classes=K, width=4)
    student = models.create_model("deeplabv3_tiny", num_classes=K, width=2)
    x = jnp.zeros((2, *SEG_SHAPE))
    tv = tiny.randomize_batch_stats(teacher.init(jax.random.PRNGKey(0), x, train=False),
                                    jax.random.PRNGKey(1))  # fmt: skip
    return teacher, tv, student


def meta_latent_synthesizer(mesh):
    t, _, s, _ = tiny.make_models(jax.random.PRNGKey(0))
    base_synth = tiny.make_fast_synthesizer(
        t, s, meta_gradient="reptile", g_steps=2, batch_size=BATCH, bn_momentum=0.9,
        batch_sharding=sharding.batch_sharding(mesh),
    )  # fmt: skip
    synth = meta_latent.MetaLatentSynthesizer(base_synth, meta_lr_z=0.05, reset_every=2)
    return synth, tiny.make_models(jax.random.PRNGKey(0))[1], s, tiny.IMAGE_SHAPE


def dense_synthesizer(mesh):
    teacher, tv, student = seg_models()
    block = ml_collections.ConfigDict(
        dict(bn=1.0, oh=0.5, bn_momentum=0.9, adversarial="kl", js_temperature=3.0, student_bn=0.0,
             augment=ml_collections.ConfigDict(
                 dict(kind="crop", padding=1, flip=True, jitter=1, scale=(0.75, 1.0),
                      flip_whole_batch=False))))  # fmt: skip
    synth = fastdfkd.FastSynthesizer(
        generator=models.create_generator("generator", SEG_SHAPE, nz=4, ngf=2),
        objective=objective_from_config(block, SEG_INFO, teacher, student),
        num_classes=K, batch_size=BATCH, g_steps=2, lr_g=0.05, lr_z=0.05, meta_lr=0.01,
        inner_betas=(0.5, 0.999), meta_betas=(0.5, 0.999), inner_eps_root=1e-8,
        meta_gradient="first_order", reptile_factor=1.0, strategy="meta", remat=False,
        batch_sharding=sharding.batch_sharding(mesh),
    )  # fmt: skip
    return synth, tv, student, SEG_SHAPE


def run_state(synth, tv, student, image_shape, mesh):
    fresh = state.create_dfkd_state(
        synth, student, student_tx(), tv, image_shape=image_shape, pool_capacity=POOL,
        student_rng=jax.random.PRNGKey(2), synthesizer_rng=jax.random.PRNGKey(1),
        pool_images=jax.random.uniform(jax.random.PRNGKey(5), (POOL, *image_shape)),
    )  # fmt: skip
    return sharding.place_state(fresh, mesh), sharding.replicate(tv, mesh)


def synthesis_calls(n, make, calls):
    mesh = mesh_of(n)
    synth, tv, student, image_shape = make(mesh)
    run, tv = run_state(synth, tv, student, image_shape, mesh)
    fn, _ = synth.compile_call(
        run, tv, jax.random.PRNGKey(0), jnp.float32(0.5), mesh=mesh, donate=False
    )
    outputs = []
    for i in range(calls):
        run, images, metrics = fn(run, tv, jax.random.PRNGKey(10 + i), jnp.float32(0.5))
        outputs.append((images, metrics))
    return fn, run, outputs


@pytest.mark.parametrize(
    "make",
    [meta_latent_synthesizer, pytest.param(dense_synthesizer, marks=pytest.mark.slow)],  # 25 s
)
def test_synthesis_on_8_devices_equals_1(make):
    calls = 3 if make is meta_latent_synthesizer else 2
    fn8, run8, out8 = synthesis_calls(8, make, calls)
    _, run1, out1 = synthesis_calls(1, make, calls)
    for (images8, metrics8), (images1, metrics1) in zip(out8, out1, strict=True):
        assert len(images8.sharding.device_set) == 8
        np.testing.assert_allclose(images8, images1, rtol=1e-4, atol=1e-5)
        assert_trees_close(metrics8, metrics1)
    assert_trees_close(run8.bn_memory, run1.bn_memory)
    assert_trees_close(run8.pool, run1.pool)
    if make is meta_latent_synthesizer:
        assert [float(m["latent_reset"]) for _, m in out8] == [0.0, 1.0, 0.0]
        np.testing.assert_allclose(run8.synthesizer.z, run1.synthesizer.z, rtol=1e-4, atol=1e-5)
    assert flops(fn8) > 0


def test_per_pixel_kd_step_on_8_devices_equals_1():
    results = {}
    for n in (8, 1):
        mesh = mesh_of(n)
        synth, tv, student, image_shape = dense_synthesizer(mesh)
        run, tv = run_state(synth, tv, student, image_shape, mesh)
        teacher = seg_models()[0]
        fn, _ = distill.compile_kd_step(
            run, tv, jax.random.PRNGKey(0), mesh=mesh, donate=False, synthesizer=synth,
            student=student, teacher=teacher, tx=student_tx(), batch_size=BATCH,
            temperature=1.0, augment=make_synthesis_augment(AUG, SEG_INFO.mean, SEG_INFO.std),
        )  # fmt: skip
        losses = []
        for i in range(2):
            run, metrics = fn(run, tv, jax.random.PRNGKey(20 + i))
            losses.append(metrics["kd_loss"])
        results[n] = (fn, run.student, losses)
    assert_trees_close(results[8][1], results[1][1])
    np.testing.assert_allclose(results[8][2], results[1][2], rtol=1e-4, atol=1e-5)
    assert flops(results[8][0]) < 0.3 * flops(results[1][0])
