"""The paper's other baselines on the synthesis interface: DAFL / ZSKT / DFQ (generative) and CMI.

Their loss functions are checked against the original's formulas in test_baseline_losses.py and
test_cmi.py; here: that the synthesizers compute those losses (wiring), train the state the way
the original does, and run in the trainer.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastdfkd_jax import main
from fastdfkd_jax import metric_files as metrics
from fastdfkd_jax.data import augment
from fastdfkd_jax.synthesis import (
    baseline_augment,
    baseline_losses,
    cmi_parts,
    generative,
    losses,
)
from fastdfkd_jax.synthesis.fastdfkd import reset_layers
from tests.conftest import load_config
from tests.fastdfkd_jax import tiny

pytestmark = pytest.mark.usefixtures("fast_compile")

MEAN, STD = (0.5,), (0.25,)


# -- DAFL / ZSKT / DFQ ----------------------------------------------------------------------------
def make_generative(adversary="student", adv=1.0, bn=1.0, oh=1.0, act=0.1, balance=2.0):
    teacher, tv, student, sv = tiny.make_models(jax.random.PRNGKey(0))
    objective = generative.GenerativeObjective(
        teacher=teacher,
        student=student,
        mean=MEAN,
        std=STD,
        bn=bn,
        oh=oh,
        act=act,
        balance=balance,
        adversary=adversary,
    )
    synth = generative.GenerativeSynthesizer(
        generator=tiny.tiny_generator(),
        objective=objective,
        batch_size=6,
        kd_batch_size=5,
        kd_steps_per_round=3,
        g_steps=2,
        lr_g=0.05,
        betas=(0.5, 0.999),
        adv=adv,
    )
    return synth, tv, sv


def test_generative_loss_is_the_originals_weighted_sum():
    synth, tv, sv = make_generative()
    teacher, student = synth.objective.teacher, synth.objective.student
    images = jax.random.uniform(jax.random.PRNGKey(1), (6, *tiny.IMAGE_SHAPE))
    loss, parts = synth.objective(images, tv, sv, jnp.float32(0.7))
    x = augment.normalize(images, MEAN, STD)
    t_logits, records = losses.capture_bn_inputs(teacher, tv, x, train=False)
    _, dense_inputs = baseline_losses.capture_dense_inputs(teacher, tv, x, train=False)
    s_logits = student.apply(sv, x, train=False)
    want = (
        0.7 * baseline_losses.generative_adversarial_loss(s_logits, t_logits)
        + 1.0 * losses.bn_statistics_loss(records)
        + 1.0 * baseline_losses.pseudo_label_loss(t_logits)
        + 0.1 * baseline_losses.activation_loss(dense_inputs[-1])
        + 2.0 * baseline_losses.information_entropy_loss(t_logits)
    )
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert float(parts["loss_adv"]) < 0.0  # the student disagrees with the teacher
    # The original's adversary (the teacher itself): the term is exactly zero, and so is its
    # gradient (ZSKT's generator would never move).
    orig, *_ = make_generative(adversary="teacher", bn=0.0, oh=0.0, act=0.0, balance=0.0)

    def adv_only(images):
        return orig.objective(images, tv, sv, jnp.float32(1.0))[0]

    assert abs(float(adv_only(images))) < 1e-6  # zero up to rounding
    assert float(jnp.abs(jax.grad(adv_only)(images)).max()) < 1e-6
    assert (
        float(
            jnp.abs(
                jax.grad(lambda x: synth.objective(x, tv, sv, 1.0)[1]["loss_adv"])(images)
            ).max()
        )
        > 1e-3
    )  # the fix: the student's disagreement has a gradient
    with pytest.raises(ValueError, match="Unknown synthesis.generative.adversary 'self'"):
        dataclasses.replace(synth, objective=dataclasses.replace(synth.objective, adversary="self"))


def test_generative_call_trains_the_generator_and_samples_fresh_kd_batches():
    synth, tv, sv = make_generative()
    state = synth.init(jax.random.PRNGKey(1))
    assert state.kd_batches.shape == (3, 5, *tiny.IMAGE_SHAPE)
    memory = losses.init_bn_memory([])
    rng, adv = jax.random.PRNGKey(2), jnp.float32(1.0)
    new, _, images, metrics_ = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, adv)
    # Two Adam steps of the persistent generator, each on fresh latents (the original's loop).
    step_rng, kd_rng = jax.random.split(rng)
    params, opt_state = state.params, state.opt_state
    tx = optax.adam(0.05, b1=0.5, b2=0.999)
    for k in range(2):

        def loss_fn(p, k=k):
            x = synth.sample(p, state.batch_stats, jax.random.fold_in(step_rng, k), 6)
            return synth.objective(x, tv, sv, adv)[0]

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    # Compared by what they compute: the tiny generator's Dense bias feeds a BatchNorm over a 1x1
    # map, so its gradient is rounding noise that Adam turns into arbitrary +-lr steps.
    check_key = jax.random.PRNGKey(5)
    np.testing.assert_allclose(
        synth.sample(new.params, state.batch_stats, check_key, 6),
        synth.sample(params, state.batch_stats, check_key, 6),
        rtol=1e-4,
        atol=1e-5,
    )
    assert not np.allclose(new.params["conv1"]["kernel"], state.params["conv1"]["kernel"])
    # The round's KD batches: fresh samples of the UPDATED generator, one per student step.
    keys = jax.random.split(kd_rng, 3)
    for i in range(3):
        np.testing.assert_allclose(
            new.kd_batches[i], synth.sample(params, state.batch_stats, keys[i], 5), atol=1e-5
        )
    assert not np.allclose(new.kd_batches[0], new.kd_batches[1])
    # A student at step 7 (step 1 of a round of 3) gets batch 1.
    dfkd = dataclasses.make_dataclass("S", ["synthesizer", "student"])
    student = dataclasses.make_dataclass("C", ["step"])(jnp.int32(7))
    np.testing.assert_array_equal(
        synth.kd_images(dfkd(new, student), jax.random.PRNGKey(0), 5), new.kd_batches[1]
    )
    with pytest.raises(ValueError, match="samples batches of 5"):
        synth.kd_images(dfkd(new, student), jax.random.PRNGKey(0), 4)
    assert images.shape == (6, *tiny.IMAGE_SHAPE) and np.isfinite(
        float(metrics_["synth_loss_last"])
    )


@pytest.mark.parametrize("method, per_round", [("dfq", 1), ("zskt", 2)])
def test_generative_method_runs_in_the_trainer(teacher_dir, tmp_path, method, per_round):
    """kd.steps student steps per epoch in rounds of kd_steps_per_round, one generator call each."""
    config = load_config(f"dfkd_digits.py:{method},runlocal")
    config.teacher.checkpoint = teacher_dir
    config.synthesis.generative.kd_steps_per_round = per_round
    config.kd.steps = 4
    summary = main.run(config, str(tmp_path))
    rounds = 4 // per_round
    assert summary["synthesis_calls"] == config.epochs * rounds
    records = metrics.read_metrics(str(tmp_path))
    assert "kd_loss" in records[-1] and np.isfinite(records[-1]["synth_loss_adv"])
    assert 0.0 <= summary["student_best_test_accuracy"] <= 1.0
    assert summary["student_best_test_accuracy"] >= summary["student_test_accuracy"]


# -- CMI ------------------------------------------------------------------------------------------
def make_cmi(steps=3, chunk_steps=0, adv=0.5):
    return tiny.make_cmi(steps, chunk_steps, adv)


def test_cmi_step_loss_is_inversion_plus_contrastive():
    synth, tv, sv = make_cmi()
    state = synth.init(jax.random.PRNGKey(1))
    # A bank with one earlier batch in it, so the negatives are used.
    state = state.replace(
        bank=cmi_parts.bank_add(state.bank, jax.random.normal(jax.random.PRNGKey(9), (4, 12)))
    )
    assert synth.feature_dim() == 6 and state.bank.data.shape == (12, 12)
    carry = synth.begin(state, jax.random.PRNGKey(2), tv)
    rng, adv = jax.random.PRNGKey(3), jnp.float32(0.5)
    loss, (images, features, parts) = synth.step_loss(
        carry.inner, carry.head_params, carry, rng, tv, sv, adv
    )
    # The same loss from the phase-1 pieces (the original's formulas).
    view_rng, neg_rng = jax.random.split(rng)
    images_want, _ = synth.generator.apply(
        {"params": carry.inner["g"], "batch_stats": carry.batch_stats},
        carry.inner["z"],
        train=True,
        mutable=["batch_stats"],
    )
    np.testing.assert_allclose(images, images_want, rtol=1e-6)
    g, l = baseline_augment.cmi_views(view_rng, images, padding=1, flip=True, mean=MEAN, std=STD)
    t_logits, records = losses.capture_bn_inputs(synth.teacher, tv, g, train=False)
    _, g_feat = cmi_parts.capture_instance_means(synth.teacher, tv, g, train=False)
    _, l_feat = cmi_parts.capture_instance_means(synth.teacher, tv, l, train=False)
    s_logits = synth.student.apply(sv, g, train=False)
    cached, valid = cmi_parts.bank_negatives(state.bank, neg_rng, 6)
    proj = synth.head.apply(
        {"params": carry.head_params},
        jnp.concatenate([l_feat, cached[:, :6], g_feat, cached[:, 6:]]),
    )
    loss_cr = cmi_parts.contrastive_loss(proj[:10], proj[10:], valid, 4, 0.2, True)
    want = (
        losses.bn_statistics_loss(records)
        + losses.one_hot_loss(t_logits, carry.targets)
        + 0.5 * losses.adversarial_loss(s_logits, t_logits)
        + 0.8 * loss_cr
    )
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(parts["loss_cr"], loss_cr, rtol=1e-5)
    np.testing.assert_allclose(features, jnp.concatenate([l_feat, g_feat], -1), rtol=1e-6)
    assert int(valid.sum()) == 4  # the bank's 4 rows, no more


def test_cmi_resets_the_generator_every_call_and_keeps_head_and_bank():
    synth, tv, sv = make_cmi(steps=8)
    state0 = synth.init(jax.random.PRNGKey(1))
    memory = losses.init_bn_memory([])
    adv = jnp.float32(0.5)
    call = jax.jit(synth.synthesize)
    state1, _, images1, m1 = call(state0, memory, tv, sv, jax.random.PRNGKey(2), adv)
    state2, _, _, _ = call(state1, memory, tv, sv, jax.random.PRNGKey(3), adv)
    # The generator a call starts from is the original's reset_model of a fresh one, whatever
    # the state: the same from the initial state and after a call.
    rng = jax.random.PRNGKey(3)
    g_rng = jax.random.split(rng, 4)[2]
    start = synth.begin(state1, rng, tv).inner["g"]
    again = synth.begin(state0, rng, tv).inner["g"]
    fresh = synth.generator.init(g_rng, jnp.zeros((4, 3)), train=True)["params"]
    want = reset_layers(fresh, g_rng, tuple(fresh), 0.02, scale_mean=1.0)
    for a, b, w in zip(jax.tree.leaves(start), jax.tree.leaves(again), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, w, rtol=1e-6)
    assert float(jnp.abs(start["conv_out"]["bias"]).max()) == 0.0
    assert abs(float(start["bn1"]["scale"].mean()) - 1.0) < 0.05
    # The head and the bank persist: the bank holds the best iterates' features, call by call.
    assert int(state1.bank.n_updates) == 4 and int(state2.bank.n_updates) == 8
    assert int(state2.bank.ptr) == 8
    np.testing.assert_array_equal(state2.bank.data[:4], state1.bank.data[:4])
    assert not np.allclose(state2.bank.data[4:8], 0.0)
    h0, h1, h2 = (jax.tree.leaves(s.head_params)[0] for s in (state0, state1, state2))
    assert not np.allclose(h0, h1) and not np.allclose(h1, h2)
    # It lowers its loss within a call and returns images in range.
    assert float(m1["synth_best_loss"]) < float(m1["synth_loss_first"])
    assert 0.0 <= float(images1.min()) and float(images1.max()) <= 1.0


def test_cmi_chunked_equals_one_function(teacher_dir):
    synth, tv, sv = make_cmi(steps=4)
    chunked = dataclasses.replace(synth, chunk_steps=2)
    state = synth.init(jax.random.PRNGKey(1))
    memory = losses.init_bn_memory([])
    rng, adv = jax.random.PRNGKey(2), jnp.float32(0.5)
    one, _, images, _ = jax.jit(synth.synthesize)(state, memory, tv, sv, rng, adv)
    carry = chunked.begin(state, rng, tv)
    advance = jax.jit(chunked.advance, static_argnums=(6, 7))
    for first in (0, 2):
        carry = advance(carry, memory, tv, sv, adv, jnp.int32(first), 2, True)
    two, _, images2, _ = chunked.finish(state, carry, memory)
    np.testing.assert_allclose(images, images2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.bank.data, two.bank.data, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cmi500", "dafl", "fast5_sequential", "fast5_independent"])
def test_other_methods_run_in_the_trainer(teacher_dir, tmp_path, method):
    config = load_config(f"dfkd_digits.py:{method},runlocal")
    config.teacher.checkpoint = teacher_dir
    if method == "cmi500":
        config.synthesis.cmi.steps, config.synthesis.cmi.chunk_steps = 4, "2"
    summary = main.run(config, str(tmp_path))
    assert summary["method"] == method
    assert 0.0 <= summary["student_test_accuracy"] <= summary["student_best_test_accuracy"] <= 1.0


# -- ZSKT's attention transfer in the KD step -------------------------------------------------------
def test_stage_activations_are_the_last_batchnorm_input_per_resolution():
    from fastdfkd_jax import models

    model = models.create_model(
        "digits_cnn_teacher", num_classes=10
    )  # stages (32, 32), (64, 64), (128,)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    _, acts = baseline_losses.capture_stage_activations(model, variables, x, train=False)
    assert [a.shape for a in acts] == [(3, 8, 8, 32), (3, 4, 4, 64), (3, 2, 2, 128)]
    _, records = losses.capture_bn_inputs(model, variables, x, train=False)
    # The second BatchNorm of each two-conv stage (records 1 and 3), the only one of the last.
    for act, record in zip(acts, (records[1], records[3], records[4])):
        np.testing.assert_allclose(act.mean(axis=(0, 1, 2)), record.mean, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # 22 s
def test_kd_step_adds_the_attention_transfer_term():

    from fastdfkd_jax import distill, models
    from fastdfkd_jax.state import init_classifier

    teacher = models.create_model("digits_cnn_teacher", num_classes=10)
    student = models.create_model("digits_cnn_small", num_classes=10)  # the same 3 resolutions
    tv = teacher.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    tx = optax.sgd(0.1)
    state = init_classifier(student, tx, jax.random.PRNGKey(1), (8, 8, 1))
    images = jax.random.uniform(jax.random.PRNGKey(2), (4, 8, 8, 1))

    def no_augment(rng, images):
        return augment.normalize(images, MEAN, STD)

    opts = dict(student=student, teacher=teacher, tx=tx, temperature=4.0, augment=no_augment)
    rng = jax.random.PRNGKey(3)
    with_at, m_at = distill.student_step(state, images, tv, rng, at_weight=250.0, **opts)
    without, m_plain = distill.student_step(state, images, tv, rng, **opts)
    x = augment.normalize(images, MEAN, STD)
    _, t_maps = baseline_losses.capture_stage_activations(teacher, tv, x, train=False)
    (_, _), s_maps = baseline_losses.capture_stage_activations(
        student,
        {"params": state.params, "batch_stats": state.batch_stats},
        x,
        train=True,
        mutable=["batch_stats"],
    )
    want = baseline_losses.attention_transfer_loss(s_maps, t_maps)
    np.testing.assert_allclose(m_at["at_loss"], want, rtol=1e-5)
    np.testing.assert_allclose(m_at["kd_loss"], m_plain["kd_loss"], rtol=1e-6)
    assert "at_loss" not in m_plain
    assert not np.allclose(
        with_at.params["stage0_conv0"]["kernel"], without.params["stage0_conv0"]["kernel"]
    )
