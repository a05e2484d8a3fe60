"""The baselines' losses against the original's formulas: PyTorch computations of its expressions
(datafree/criterions.py, hooks.py, synthesis/{deepinversion,generative}.py) and hand-computed cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.models import create_model
from fastdfkd_jax.models.torch_import import convert_state_dict
from fastdfkd_jax.synthesis import baseline_augment, baseline_losses, losses
from fastdfkd_jax.synthesis.objective import js_divergence

pytestmark = pytest.mark.usefixtures("fast_compile")


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _logits(seed, shape=(6, 10), scale=4.0):
    # Large logits: many probabilities outside [0.01, 0.99], so the clamp matters.
    return np.random.RandomState(seed).randn(*shape).astype(np.float32) * scale


# -- jsdiv ------------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_jsdiv_clamped_matches_the_original_expression(temperature):
    torch = _torch()
    F = torch.nn.functional  # noqa: N806
    s, t = _logits(0), _logits(1)
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)
    # datafree/criterions.py `jsdiv`, spelled out.
    p = F.softmax(ts / temperature, dim=1)
    q = F.softmax(tt / temperature, dim=1)
    m = 0.5 * (p + q)
    p, q, m = (torch.clamp(a, 0.01, 0.99) for a in (p, q, m))
    expected = 0.5 * F.kl_div(torch.log(p), m, reduction="batchmean") + 0.5 * F.kl_div(
        torch.log(q), m, reduction="batchmean"
    )
    got = baseline_losses.jsdiv_clamped(jnp.asarray(s), jnp.asarray(t), temperature)
    np.testing.assert_allclose(got, expected.item(), rtol=1e-5)


def test_jsdiv_clamped_known_value_and_not_the_js_divergence():
    # Two classes, T = 1: P = (0.5, 0.5) (logits 0, 0), Q = (0.995, 0.005) -> clamped (0.99, 0.01);
    # M = (0.7475, 0.2525) (from the unclamped P, Q).
    s = jnp.array([[0.0, 0.0]])
    q1 = 0.995
    t = jnp.array([[np.log(q1 / (1 - q1)), 0.0]])
    m = np.array([0.5 * (0.5 + q1), 0.5 * (0.5 + 1 - q1)])
    kl_mp = np.sum(m * (np.log(m) - np.log([0.5, 0.5])))
    kl_mq = np.sum(m * (np.log(m) - np.log([0.99, 0.01])))
    expected = 0.5 * kl_mp + 0.5 * kl_mq
    got = float(baseline_losses.jsdiv_clamped(s, t, 1.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The Jensen-Shannon divergence of the same pair is a different number.
    assert abs(float(js_divergence(s, t, 1.0)) - got) > 0.05


def test_jsdiv_clamped_has_no_gradient_where_saturated():
    # Every probability outside [0.01, 0.99]: the clamp removes all gradient.
    s = jnp.array([[10.0, -10.0]])
    t = jnp.array([[-10.0, 10.0]])
    grad = jax.grad(lambda x: baseline_losses.jsdiv_clamped(x, t, 1.0))(s)
    np.testing.assert_array_equal(grad, 0.0)


# -- DeepInversion's BN term ------------------------------------------------------------------------
def test_deepinversion_bn_loss_hand_computed():
    rm, rv = jnp.zeros(2), jnp.ones(2)
    teacher = [losses.BNRecord(jnp.array([3.0, 4.0]), jnp.ones(2), rm, rv)]  # ||(3,4)|| = 5
    student = [
        losses.BNRecord(jnp.zeros(2), jnp.array([1.0, 3.0]), rm, rv),  # ||(0,2)|| = 2
        losses.BNRecord(jnp.array([0.0, 7.0]), jnp.ones(2), rm, rv),  # 7
    ]
    np.testing.assert_allclose(
        baseline_losses.deepinversion_bn_loss(teacher, student), 5.0 - 0.001 * 9.0, rtol=1e-6
    )
    np.testing.assert_allclose(
        baseline_losses.deepinversion_bn_loss(teacher, student, 0.5), 5.0 - 4.5, rtol=1e-6
    )


def _twin(arch, seed):
    """A randomized PyTorch twin of `arch` in eval mode and its converted Flax variables."""
    torch = _torch()
    from fastdfkd_jax.models import torch_twins

    net = torch_twins.build(arch, 10, 3)
    net = torch_twins.randomize_(net, torch.Generator().manual_seed(seed)).eval()
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return net, create_model(arch, num_classes=10), convert_state_dict(arch, 10, state)


class _DeepInversionHook:
    """The original's DeepInversionHook (hooks.py) without momentum: r_feature of a BN input."""

    def __init__(self, module):
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        x = inputs[0]
        nch = x.shape[1]
        mean = x.mean([0, 2, 3])
        var = x.permute(1, 0, 2, 3).contiguous().view([nch, -1]).var(1, unbiased=False)
        self.r_feature = (module.running_var.data - var).norm(2) + (
            module.running_mean.data - mean
        ).norm(2)


@pytest.mark.torch
def test_deepinversion_bn_loss_matches_the_original_hooks_on_wide_resnets():
    torch = _torch()
    t_net, teacher, t_vars = _twin("wrn16_2", 0)
    s_net, student, s_vars = _twin("wrn16_1", 1)
    x = np.random.RandomState(2).randn(4, 3, 32, 32).astype(np.float32)
    t_hooks = [
        _DeepInversionHook(m) for m in t_net.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    s_hooks = [
        _DeepInversionHook(m) for m in s_net.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        t_net(torch.from_numpy(x))
        s_net(torch.from_numpy(x))
    # deepinversion.py: loss_bn = sum(teacher r) - 0.001 * sum(student r)
    expected = sum(h.r_feature for h in t_hooks) - 0.001 * sum(h.r_feature for h in s_hooks)
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    _, t_records = losses.capture_bn_inputs(teacher, t_vars, xj, train=False)
    _, s_records = losses.capture_bn_inputs(student, s_vars, xj, train=False)
    assert len(t_records) == len(t_hooks) and len(s_records) == len(s_hooks)
    got = baseline_losses.deepinversion_bn_loss(t_records, s_records)
    np.testing.assert_allclose(got, expected.item(), rtol=2e-5)


# -- DAFL / DFQ / ZSKT -----------------------------------------------------------------------------
@pytest.mark.torch
def test_generative_losses_match_the_original_expressions():
    torch = _torch()
    F = torch.nn.functional  # noqa: N806
    t, s = _logits(3, scale=2.0), _logits(4, scale=2.0)
    feats = np.random.RandomState(5).randn(6, 16).astype(np.float32)
    tt, ts, tf = torch.from_numpy(t), torch.from_numpy(s), torch.from_numpy(feats)
    # synthesis/generative.py, with criterion = criterions.KLDiv() (T = 1, batchmean).
    oh = F.cross_entropy(tt, tt.max(1)[1])
    act = -tf.abs().mean()
    p = F.softmax(tt, dim=1).mean(0)
    balance = (p * torch.log(p)).sum()
    adv = -F.kl_div(F.log_softmax(ts, dim=1), F.softmax(tt, dim=1), reduction="batchmean")
    tj, sj = jnp.asarray(t), jnp.asarray(s)
    np.testing.assert_allclose(baseline_losses.pseudo_label_loss(tj), oh.item(), rtol=1e-5)
    np.testing.assert_allclose(baseline_losses.activation_loss(feats), act.item(), rtol=1e-6)
    np.testing.assert_allclose(
        baseline_losses.information_entropy_loss(tj), balance.item(), rtol=1e-5
    )
    np.testing.assert_allclose(
        baseline_losses.generative_adversarial_loss(sj, tj), adv.item(), rtol=1e-5
    )


def test_generative_losses_known_values():
    # Uniform predictions: the entropy of the mean is log K, the loss -log K.
    np.testing.assert_allclose(
        baseline_losses.information_entropy_loss(jnp.zeros((3, 4))), -np.log(4.0), rtol=1e-6
    )
    # One class for the whole batch: p = (1, 0, ...) up to rounding, loss near 0 (its maximum).
    assert float(baseline_losses.information_entropy_loss(jnp.array([[30.0, 0, 0]] * 2))) > -1e-6
    # Pseudo labels: CE against the argmax, for [2, 0] (label 0) and [0, 1] (label 1).
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    np.testing.assert_allclose(baseline_losses.pseudo_label_loss(logits), expected, rtol=1e-6)
    np.testing.assert_allclose(baseline_losses.activation_loss(jnp.array([[-1.0, 3.0]])), -2.0)
    # The original's student = teacher bug: the adversarial term is 0, and so is its gradient.
    g = jax.grad(lambda x: baseline_losses.generative_adversarial_loss(x, x))(logits)
    assert abs(float(baseline_losses.generative_adversarial_loss(logits, logits))) < 1e-6
    np.testing.assert_allclose(g, 0.0, atol=1e-7)


@pytest.mark.torch
def test_penultimate_features_match_the_original_return_features():
    torch = _torch()
    net, model, variables = _twin("wrn16_1", 6)
    captured = {}

    def hook(module, inputs, output):
        captured["features"] = inputs[0]

    net.fc.register_forward_hook(hook)
    x = np.random.RandomState(7).randn(3, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        net(torch.from_numpy(x))
    logits, inputs = baseline_losses.capture_dense_inputs(
        model, variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    assert len(inputs) == 1 and inputs[-1].shape == (3, 64)
    np.testing.assert_allclose(inputs[-1], captured["features"].numpy(), rtol=1e-4, atol=1e-5)
    fc = variables["params"]["fc"]
    np.testing.assert_allclose(logits, inputs[-1] @ fc["kernel"] + fc["bias"], rtol=1e-5)


@pytest.mark.torch
def test_attention_transfer_matches_the_zskt_formula():
    torch = _torch()
    F = torch.nn.functional  # noqa: N806
    rs = np.random.RandomState(8)
    s_acts = [rs.randn(2, 4, 4, 3).astype(np.float32), rs.randn(2, 2, 2, 5).astype(np.float32)]
    t_acts = [rs.randn(2, 4, 4, 6).astype(np.float32), rs.randn(2, 2, 2, 7).astype(np.float32)]

    def at(x):  # ZSKT's attention(): NCHW
        return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))

    expected = sum(
        (
            at(torch.from_numpy(s.transpose(0, 3, 1, 2)))
            - at(torch.from_numpy(t.transpose(0, 3, 1, 2)))
        )
        .pow(2)
        .mean()
        for s, t in zip(s_acts, t_acts)
    )
    got = baseline_losses.attention_transfer_loss(
        [jnp.asarray(a) for a in s_acts], [jnp.asarray(a) for a in t_acts]
    )
    np.testing.assert_allclose(got, expected.item(), rtol=1e-5)
    maps = baseline_losses.attention_map(jnp.asarray(s_acts[0]))
    np.testing.assert_allclose(jnp.linalg.norm(maps, axis=-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="as many student layers"):
        baseline_losses.attention_transfer_loss(s_acts, t_acts[:1])


# -- DeepInversion's augmentation ------------------------------------------------------------------
def test_jitter_and_flip_flips_the_whole_batch_or_nothing():
    images = jax.random.uniform(jax.random.PRNGKey(0), (5, 6, 6, 2))
    outcomes = set()
    for i in range(12):
        rng = jax.random.PRNGKey(i)
        out = baseline_augment.jitter_and_flip(rng, images, 1, flip=True)
        rolled = baseline_augment.jitter_and_flip(rng, images, 1, flip=False)
        flipped = np.asarray(rolled)[:, :, ::-1]
        same = [np.array_equal(o, r) for o, r in zip(np.asarray(out), np.asarray(rolled))]
        mirrored = [np.array_equal(o, f) for o, f in zip(np.asarray(out), flipped)]
        assert all(same) or all(mirrored)  # never a mix within the batch
        outcomes.add(all(mirrored))
        # One roll for the whole batch: every sample moved by the same offset.
        shifts = {
            next(
                (dr, dc)
                for dr in range(-1, 2)
                for dc in range(-1, 2)
                if np.array_equal(np.roll(np.asarray(images[b]), (dr, dc), (0, 1)), rolled[b])
            )
            for b in range(5)
        }
        assert len(shifts) == 1
    assert outcomes == {True, False}  # both outcomes occur over 12 keys


# -- the KD criterion of the generative baselines ---------------------------------------------------
@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist", "cifar"])
def test_generative_baselines_distill_at_the_originals_temperature(dataset):
    """datafree_kd.py replaces the KD criterion of DAFL, ZSKT and DFQ by `KLDiv()` (T = 1): their
    KD step's loss is batchmean KL(softmax(t) || softmax(s)), no T^2 factor to speak of; every
    other method keeps the scripts' T = 20.
    """
    from tests.conftest import CONFIGS, load_config

    s, t = _logits(2, scale=2.0), _logits(3, scale=2.0)
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    # datafree/criterions.py kldiv at T = 1: F.kl_div(log q, p, reduction='batchmean').
    original = float(np.sum(p * (np.log(p) - log_q)) / len(s))
    for method in ("dafl", "zskt", "dfq", "fast5", "cmi500", "deepinv2k"):
        config = load_config(f"{CONFIGS}/dfkd_{dataset}.py:{method}")
        generative = method in ("dafl", "zskt", "dfq")
        assert config.kd.temperature == (1.0 if generative else 20.0), method
        if generative:
            got = losses.kd_loss(jnp.asarray(s), jnp.asarray(t), config.kd.temperature)
            np.testing.assert_allclose(got, original, rtol=1e-5)
