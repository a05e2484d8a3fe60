"""Data-free distillation for dense prediction: every loss per pixel, the segmentation objective,
FastDFKD and DeepInversion synthesis from a segmentation teacher.

The per-pixel terms are the classification terms applied to every pixel as a sample: each is
checked against the same loss on the pixels flattened into a batch, and against known values.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fastdfkd_jax import models
from fastdfkd_jax.data import base
from fastdfkd_jax.synthesis import deepinversion, fastdfkd, losses
from fastdfkd_jax.synthesis.objective import (
    DenseObjective,
    Objective,
    init_bn_memory,
    js_divergence,
    objective_from_config,
)
from tests.fastdfkd_jax import tiny

pytestmark = pytest.mark.usefixtures("fast_compile")

K = 3
SHAPE = (8, 8, 3)
SEG_INFO = base.DatasetInfo("toy_seg", SHAPE, K, (0.5,) * 3, (0.25,) * 3, 4, 4,
                            task="segmentation")  # fmt: skip


def pixel_logits(seed, shape=(2, 3, 4, K)):
    return jax.random.normal(jax.random.PRNGKey(seed), shape) * 2.0


def flat(x):
    return x.reshape(-1, x.shape[-1])


def test_kd_and_adversarial_losses_are_per_pixel_means():
    s, t = pixel_logits(0), pixel_logits(1)
    # Per pixel = the classification loss on the pixels as a batch.
    np.testing.assert_allclose(
        losses.kd_loss(s, t, 2.0), losses.kd_loss(flat(s), flat(t), 2.0), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.adversarial_loss(s, t), losses.adversarial_loss(flat(s), flat(t)), rtol=1e-6
    )
    np.testing.assert_allclose(
        js_divergence(s, t, 3.0), js_divergence(flat(s), flat(t), 3.0), rtol=1e-6
    )
    # Known value: the mean over pixels of KL(t || s) * T^2, pixel by pixel in numpy.
    p = np.asarray(jax.nn.softmax(t / 2.0))
    log_q = np.asarray(jax.nn.log_softmax(s / 2.0))
    kl = (p * (np.log(p) - log_q)).sum(-1)
    np.testing.assert_allclose(losses.kd_loss(s, t, 2.0), kl.mean() * 4.0, rtol=1e-5)
    # The adversarial mask is per pixel: a pixel where the argmaxes differ does not count.
    agree = np.asarray(s).argmax(-1) == np.asarray(t).argmax(-1)
    kl1 = np.asarray(losses.kl_per_sample(s, t, 1.0))
    np.testing.assert_allclose(losses.adversarial_loss(s, t), -(kl1 * agree).mean(), rtol=1e-5)
    assert 0 < agree.mean() < 1  # both kinds of pixels occur


def test_per_pixel_losses_do_not_depend_on_pixel_order():
    s, t = pixel_logits(2), pixel_logits(3)
    perm = np.random.default_rng(0).permutation(3 * 4)

    def shuffle(x):
        return x.reshape(2, 12, K)[:, perm].reshape(x.shape)

    for loss in (
        lambda a, b: losses.kd_loss(a, b, 4.0),
        losses.adversarial_loss,
        lambda a, b: js_divergence(a, b, 3.0),
    ):
        np.testing.assert_allclose(loss(shuffle(s), shuffle(t)), loss(s, t), rtol=1e-6)


def test_dense_one_hot_term_is_cross_entropy_against_the_teachers_argmax():
    t = pixel_logits(4)
    objective = DenseObjective(None, None, tiny.identity_augment, 1.0, 1.0, 0.0)
    got = objective.one_hot_term(t, jnp.zeros((2,), jnp.int32))  # per-image targets: unused
    log_p = np.asarray(jax.nn.log_softmax(t))
    labels = log_p.argmax(-1)
    want = -np.take_along_axis(log_p, labels[..., None], -1).mean()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The argmax is a constant: the gradient is that of the cross-entropy at fixed labels.
    grad = jax.grad(lambda x: objective.one_hot_term(x, None))(t)
    softmax = np.asarray(jax.nn.softmax(t))
    want_grad = (softmax - np.eye(K)[labels]) / labels.size
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def seg_models():
    teacher = models.create_model("deeplabv3_tiny", num_classes=K, width=4)
    student = models.create_model("deeplabv3_tiny", num_classes=K, width=2)
    x = jnp.zeros((2, *SHAPE))
    t_rng, s_rng, b_rng = jax.random.split(jax.random.PRNGKey(0), 3)
    tv = tiny.randomize_batch_stats(teacher.init(t_rng, x, train=False), b_rng)
    sv = student.init(s_rng, x, train=False)
    return teacher, tv, student, sv


def synthesis_block(**overrides):
    s = ml_collections.ConfigDict(
        dict(
            bn=1.0, oh=0.5, bn_momentum=0.9, adversarial="kl", js_temperature=3.0, student_bn=0.0,
            augment=ml_collections.ConfigDict(
                dict(
                    kind="crop", padding=1, flip=True, jitter=1, scale=(0.75, 1.0),
                    flip_whole_batch=False,
                )
            ),
        )
    )  # fmt: skip
    s.update(overrides)
    return s


def test_objective_from_config_is_dense_for_segmentation_and_sums_its_terms():
    teacher, tv, student, sv = seg_models()
    objective = objective_from_config(synthesis_block(), SEG_INFO, teacher, student)
    assert isinstance(objective, DenseObjective)
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, *SHAPE))
    memory = init_bn_memory(objective, tv, SHAPE)
    rng, adv = jax.random.PRNGKey(2), jnp.float32(0.7)
    loss, (records, parts) = jax.jit(objective)(images, None, rng, tv, sv, memory, adv)
    # One record per BatchNorm of the teacher (3 backbone, 6 ASPP, 1 head), in call order.
    assert len(records) == len(jax.tree.leaves(tv["batch_stats"])) // 2 == 10
    inputs = objective.augment(rng, images)
    t_logits = teacher.apply(tv, inputs, train=False)
    s_logits = student.apply(sv, inputs, train=False)
    assert t_logits.shape == (2, *SHAPE[:2], K)
    np.testing.assert_allclose(
        parts["loss_adv"], losses.adversarial_loss(s_logits, t_logits), rtol=1e-5
    )
    np.testing.assert_allclose(parts["loss_oh"], objective.one_hot_term(t_logits, None), rtol=1e-5)
    np.testing.assert_allclose(
        loss, 1.0 * parts["loss_bn"] + 0.5 * parts["loss_oh"] + 0.7 * parts["loss_adv"], rtol=1e-5
    )
    classification = objective_from_config(
        synthesis_block(), tiny_classification_info(), teacher, student
    )
    assert type(classification) is Objective


def tiny_classification_info():
    return base.DatasetInfo("toy", SHAPE, K, (0.5,) * 3, (0.25,) * 3, 4, 4)


def test_fast_synthesis_from_a_segmentation_teacher_lowers_its_loss():
    teacher, tv, student, sv = seg_models()
    # No augmentation: eight steps then lower the loss steadily (a noisy crop would hide it).
    still = ml_collections.ConfigDict(
        dict(kind="crop", padding=0, flip=False, jitter=0, scale=(1.0, 1.0))
    )
    objective = objective_from_config(synthesis_block(augment=still), SEG_INFO, teacher, student)
    synth = fastdfkd.FastSynthesizer(
        generator=models.create_generator("generator", SHAPE, nz=4, ngf=4),
        objective=objective,
        num_classes=K,
        batch_size=4,
        g_steps=8,
        lr_g=0.05,
        lr_z=0.05,
        meta_lr=0.01,
        inner_betas=(0.5, 0.999),
        meta_betas=(0.5, 0.999),
        inner_eps_root=1e-8,
        meta_gradient="first_order",
        reptile_factor=1.0,
        strategy="meta",
        remat=False,
    )
    state = synth.init(jax.random.PRNGKey(1))
    memory = init_bn_memory(objective, tv, SHAPE)
    new, memory, images, metrics = jax.jit(synth.synthesize)(
        state, memory, tv, sv, jax.random.PRNGKey(2), jnp.float32(0.5)
    )
    assert images.shape == (4, *SHAPE)
    assert float(metrics["synth_best_loss"]) < float(metrics["synth_loss_first"])
    assert bool(memory.ready)
    assert all(np.isfinite(float(v)) for v in jax.tree.leaves(metrics))


def test_deepinversion_from_a_segmentation_teacher_stays_in_range():
    teacher, tv, student, sv = seg_models()
    objective = objective_from_config(
        synthesis_block(augment=ml_collections.ConfigDict(
            dict(kind="jitter", padding=1, flip=True, jitter=1, scale=(0.75, 1.0))),
            adversarial="js", bn_momentum=0.0),
        SEG_INFO, teacher, student,
    )  # fmt: skip
    synth = deepinversion.DeepInversionSynthesizer(
        objective=objective,
        num_classes=K,
        batch_size=2,
        image_shape=SHAPE,
        steps=3,
        lr=0.1,
        betas=(0.5, 0.99),
        mean=SEG_INFO.mean,
        std=SEG_INFO.std,
    )
    memory = init_bn_memory(objective, tv, SHAPE)
    _, _, images, metrics = jax.jit(synth.synthesize)(
        synth.init(None), memory, tv, sv, jax.random.PRNGKey(3), jnp.float32(1.0)
    )
    assert images.shape == (2, *SHAPE)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert np.isfinite(float(metrics["synth_loss_last"]))


def test_dafl_objective_of_a_segmentation_teacher_is_per_pixel():
    """DAFL's terms from a segmentation teacher: the features are the input of its final 1x1
    classifier conv, and each logit term is the classification term on the pixels as a batch."""
    from fastdfkd_jax.synthesis import baseline_losses, generative

    teacher, tv, student, sv = seg_models()
    objective = generative.GenerativeObjective(
        teacher, student, SEG_INFO.mean, SEG_INFO.std, bn=1.0, oh=1.0, act=0.1, balance=5.0
    )
    images = jax.random.uniform(jax.random.PRNGKey(3), (2, *SHAPE))
    adv = jnp.float32(0.5)
    loss, parts = jax.jit(objective)(images, tv, sv, adv)
    x = (images - 0.5) / 0.25
    t_logits, _, features = generative.capture_teacher(teacher, tv, x)
    assert t_logits.shape == (2, *SHAPE[:2], K)
    # DeepLab's classifier input: the head's features at the backbone's resolution (stride 4).
    assert features.shape == (2, SHAPE[0] // 4, SHAPE[1] // 4, 4)
    s_logits = student.apply(sv, x, train=False)
    np.testing.assert_allclose(
        parts["loss_balance"],
        baseline_losses.information_entropy_loss(flat(t_logits)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        parts["loss_oh"], baseline_losses.pseudo_label_loss(flat(t_logits)), rtol=1e-5
    )
    np.testing.assert_allclose(
        parts["loss_adv"],
        baseline_losses.generative_adversarial_loss(flat(s_logits), flat(t_logits)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(parts["loss_act"], -np.abs(np.asarray(features)).mean(), rtol=1e-5)
    want = (
        0.5 * parts["loss_adv"] + parts["loss_bn"] + parts["loss_oh"] + 0.1 * parts["loss_act"]
        + 5.0 * parts["loss_balance"]
    )  # fmt: skip
    np.testing.assert_allclose(loss, want, rtol=1e-5)
