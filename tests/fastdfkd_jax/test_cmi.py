"""CMI's pieces against the original (datafree/synthesis/contrastive.py, hooks.py): instance-mean
features, the projection head, the memory bank and the contrastive loss.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.synthesis import baseline_augment, cmi_parts
from tests.fastdfkd_jax import tiny
from tests.fastdfkd_jax.test_baseline_losses import _torch, _twin

pytestmark = pytest.mark.usefixtures("fast_compile")


# -- features ---------------------------------------------------------------------------------------
@pytest.mark.torch
def test_instance_means_match_the_original_hooks():
    torch = _torch()
    net, model, variables = _twin("wrn16_1", 0)
    hooks = []

    def instance_mean_hook(store):  # hooks.py's InstanceMeanHook: the input's mean over H, W
        def hook(module, inputs, output):
            store["mean"] = inputs[0].mean(dim=[2, 3])

        return hook

    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # on every teacher BN (the WRN setting)
            hooks.append({})
            m.register_forward_hook(instance_mean_hook(hooks[-1]))
    x = np.random.RandomState(1).randn(3, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        net(torch.from_numpy(x))
    expected = torch.cat([h["mean"] for h in hooks], dim=1).numpy()
    _, features = cmi_parts.capture_instance_means(
        model, variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    # wrn16_1, two blocks per stage (bn1, bn2 inputs): 64 + 112 + 224, plus the last BN 64.
    assert features.shape == (3, 464)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


def test_instance_means_with_a_filter_and_no_match():
    teacher, tv, _, _ = tiny.make_models(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, *tiny.IMAGE_SHAPE))
    _, all_bn = cmi_parts.capture_instance_means(teacher, tv, x, train=False)
    assert all_bn.shape == (2, 2 * 3)  # two BNs of width 3
    # The first conv's input is the image itself: its spatial mean per sample and channel.
    _, first_conv = cmi_parts.capture_instance_means(
        teacher, tv, x, module_filter=lambda m: m.name == "Conv_0", train=False
    )
    np.testing.assert_allclose(first_conv, x.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="matched the CMI feature filter"):
        cmi_parts.capture_instance_means(teacher, tv, x, module_filter=lambda m: False, train=False)


@pytest.mark.parametrize(
    "arch, rule, width",
    [
        # The original's rule: a ResNet-34 teacher's layer1..layer4 inputs (the stem's 64, then
        # the outputs of stages 1-3: 64, 128, 256), every other teacher's BatchNorm inputs.
        ("resnet34", "stages", 64 + 64 + 128 + 256),
        ("wrn40_2", "batchnorm", None),
        ("resnet18", "batchnorm", None),
    ],
)
def test_feature_layers_follow_the_originals_rule(arch, rule, width):
    from fastdfkd_jax.models import create_model

    assert cmi_parts.resolve_feature_layers("auto", arch) == rule
    model = create_model(arch, num_classes=10)

    def features(kind):
        def f(x):
            variables = model.init(jax.random.PRNGKey(0), x, train=False)
            _, records, means = cmi_parts.capture_records_and_means(model, variables, x, kind)
            return means, [r.mean for r in records]

        return jax.eval_shape(f, jnp.zeros((2, 32, 32, 3)))

    means, bn_means = features(rule)
    # The BatchNorm records (the BN-statistics loss) do not depend on the feature rule.
    assert len(bn_means) == len(features("batchnorm")[1])
    if width is None:  # every BatchNorm's input: the sum of the BN widths
        width = sum(m.shape[-1] for m in bn_means)
    assert means.shape == (2, width)
    with pytest.raises(ValueError, match="feature_layers"):
        cmi_parts.resolve_feature_layers("every_conv", arch)


def test_stage_features_are_the_stage_inputs():
    """'stages' records the input of each stage's first block: the previous stage's last output."""
    from fastdfkd_jax.models import create_model

    model = create_model("resnet18", num_classes=10)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    _, _, means = cmi_parts.capture_records_and_means(model, variables, x, "stages")
    _, inter = model.apply(
        variables,
        x,
        train=False,
        capture_intermediates=lambda m, name: name == "__call__" and (m.name or "").endswith("_1"),
        mutable=["intermediates"],
    )
    outs = inter["intermediates"]
    widths = (64, 64, 128, 256)
    chunks = np.split(np.asarray(means), np.cumsum(widths)[:-1], axis=1)
    for stage, chunk in zip((1, 2, 3), chunks[1:]):
        block_out = outs[f"layer{stage}_1"]["__call__"][0]
        np.testing.assert_allclose(chunk, block_out.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="matched no module"):
        wrn = create_model("wrn16_1", num_classes=10)
        wrn_vars = wrn.init(jax.random.PRNGKey(0), x, train=False)
        cmi_parts.capture_records_and_means(wrn, wrn_vars, x, "stages")


# -- head -------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_head_matches_the_original_mlp_head():
    torch = _torch()
    head = cmi_parts.MLPHead(dim=4)
    x = np.random.RandomState(2).randn(5, 6).astype(np.float32)
    params = head.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
    t_head = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
    with torch.no_grad():
        for i, name in ((0, "fc1"), (2, "fc2")):
            t_head[i].weight.copy_(torch.from_numpy(np.array(params[name]["kernel"]).T))
            t_head[i].bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))
        expected = torch.nn.functional.normalize(t_head(torch.from_numpy(x)), dim=1, p=2)
    got = head.apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(got, axis=-1), 1.0, rtol=1e-6)
    # PyTorch's Linear bias init: U(+-1/sqrt(fan_in)).
    assert float(jnp.abs(params["fc1"]["bias"]).max()) <= 1 / np.sqrt(6)


# -- bank -------------------------------------------------------------------------------------------
def test_bank_add_wraps_and_counts():
    bank = cmi_parts.init_bank(4, 2)
    for value in (1.0, 2.0, 3.0):  # three writes of 2 rows into 4: the third overwrites rows 0, 1
        bank = cmi_parts.bank_add(bank, jnp.full((2, 2), value))
    np.testing.assert_array_equal(bank.data[:, 0], [3.0, 3.0, 2.0, 2.0])
    assert int(bank.ptr) == 2 and int(bank.n_updates) == 6
    with pytest.raises(ValueError, match=r"must be \[n, 2\]"):
        cmi_parts.bank_add(bank, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="Cannot add 5 rows"):
        cmi_parts.bank_add(bank, jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="bank size"):
        cmi_parts.init_bank(0, 2)


def test_bank_negatives_are_distinct_filled_rows():
    bank = cmi_parts.bank_add(
        cmi_parts.init_bank(8, 1), jnp.arange(3.0)[:, None] + 1.0
    )  # rows 1, 2, 3
    rows, valid = cmi_parts.bank_negatives(bank, jax.random.PRNGKey(0), 5)
    assert valid.tolist() == [True, True, True, False, False]  # min(k, filled) = 3
    assert sorted(np.asarray(rows[valid, 0]).tolist()) == [1.0, 2.0, 3.0]  # each once
    # Uniform over the filled rows: each of 3 rows comes first about a third of the time.
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    firsts = jax.vmap(lambda k: cmi_parts.bank_negatives(bank, k, 1)[0][0, 0])(keys)
    counts = np.bincount(np.asarray(firsts, int), minlength=4)[1:]
    assert counts.min() > 70, counts
    with pytest.raises(ValueError, match="k must be in"):
        cmi_parts.bank_negatives(bank, jax.random.PRNGKey(0), 9)


def test_bank_exactly_full_still_gives_negatives():
    # The original's n_updates > size test would draw min(k, ptr = 0) = 0 rows here (NaN loss).
    bank = cmi_parts.init_bank(4, 1)
    bank = cmi_parts.bank_add(cmi_parts.bank_add(bank, jnp.ones((2, 1))), 2 * jnp.ones((2, 1)))
    assert int(bank.ptr) == 0 and int(bank.n_updates) == 4
    _, valid = cmi_parts.bank_negatives(bank, jax.random.PRNGKey(0), 3)
    assert bool(valid.all())


# -- loss -------------------------------------------------------------------------------------------
def _original_contrastive(torch, head, local, cached_local, glob, cached_global, n, temp, n_upd):
    """The original contrastive.py's loss_cr, spelled out (its `head` applied to the concatenated features)."""
    F = torch.nn.functional  # noqa: N806
    proj = head(torch.cat([local, cached_local, glob, cached_global], dim=0))
    proj_local, proj_global = torch.chunk(proj, chunks=2, dim=0)
    logits = torch.mm(proj_local, proj_global.detach().T) / temp
    labels = torch.arange(start=0, end=len(logits))
    loss = F.cross_entropy(logits, labels, reduction="none")
    if n_upd > 0:
        return loss[:n].mean() + loss[n:].mean()
    return loss.mean()


@pytest.mark.torch
@pytest.mark.parametrize("cached", [0, 3])
def test_contrastive_loss_matches_the_original(cached):
    torch = _torch()
    rs = np.random.RandomState(3)
    n, d, k = 4, 6, 5
    local, glob = rs.randn(n, d).astype(np.float32), rs.randn(n, d).astype(np.float32)
    bank_rows = rs.randn(k, 2 * d).astype(np.float32)
    valid = np.arange(k) < cached
    head = cmi_parts.MLPHead(dim=3)
    params = head.init(jax.random.PRNGKey(0), jnp.zeros((1, d)))["params"]
    t_head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 3))
    with torch.no_grad():
        for i, name in ((0, "fc1"), (2, "fc2")):
            t_head[i].weight.copy_(torch.from_numpy(np.array(params[name]["kernel"]).T))
            t_head[i].bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))

    def t_proj(x):
        return torch.nn.functional.normalize(t_head(x), dim=1, p=2)

    real = torch.from_numpy(bank_rows[valid])
    tl = torch.from_numpy(local).requires_grad_()
    expected = _original_contrastive(
        torch, t_proj, tl, real[:, :d], torch.from_numpy(glob), real[:, d:], n, 0.2, cached
    )
    expected.backward()

    def ours(local_features):
        feats = jnp.concatenate(
            [local_features, bank_rows[:, :d], jnp.asarray(glob), bank_rows[:, d:]], axis=0
        )
        proj = head.apply({"params": params}, feats)
        proj_local, proj_global = jnp.split(proj, 2, axis=0)
        return cmi_parts.contrastive_loss(
            proj_local, proj_global, jnp.asarray(valid), n, 0.2, jnp.asarray(cached > 0)
        )

    value, grad = jax.value_and_grad(ours)(jnp.asarray(local))
    np.testing.assert_allclose(value, expected.item(), rtol=1e-5)
    np.testing.assert_allclose(grad, tl.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_contrastive_loss_known_value_and_detached_global():
    # Orthonormal projections, local == global: logits 1/T on the diagonal, 0 elsewhere.
    p = jnp.eye(3)
    expected = -np.log(np.exp(5.0) / (np.exp(5.0) + 2.0))  # T = 0.2, 3 columns
    got = cmi_parts.contrastive_loss(p, p, jnp.zeros((0,), bool), 3, 0.2, False)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    grad_global = jax.grad(
        lambda g: cmi_parts.contrastive_loss(p, g, jnp.zeros((0,), bool), 3, 0.2, False)
    )(p)
    np.testing.assert_array_equal(grad_global, 0.0)
    with pytest.raises(ValueError, match="do not fit a batch"):
        cmi_parts.contrastive_loss(p, p, jnp.zeros((2,), bool), 3, 0.2, False)


def test_cmi_views_shapes_and_independence():
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 3))
    global_view, local_view = baseline_augment.cmi_views(
        jax.random.PRNGKey(1), images, padding=1, flip=True, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert global_view.shape == local_view.shape == images.shape
    assert not np.allclose(global_view, local_view)
    # Normalized: [0, 1] maps into [-2, 2] (zero padding maps to -2).
    assert float(global_view.min()) >= -2.0 - 1e-6 and float(local_view.max()) <= 2.0 + 1e-6
