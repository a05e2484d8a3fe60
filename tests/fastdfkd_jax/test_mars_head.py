"""The MARS head of a distilled student: the body/head cut, the exact conversion, fine-tuning,
the phase end to end (digits `runlocal`) with a resume after a kill, and bad input."""

import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import data, main, models
from fastdfkd_jax.mars_head import finetune, fit, heads, job
from fastdfkd_jax.synthesis import pool as pool_lib
from tests.conftest import load_config

# Each classifier's last Dense layer (names imported PyTorch weights rely on).
HEAD_NAMES = {
    "digits_cnn_small": "head",
    "fmnist_cnn_tiny": "head",
    "resnet8": "fc",
    "resnet18": "linear",
    "wrn16_1": "fc",
    "vgg11_bn": "classifier",
    "resnet18_imagenet": "fc",
    "mobilenetv2_imagenet": "classifier",
}
# float32 head against float64 MARS predictions: relative to the targets' spread.
EXACT_RTOL = 1e-5

# Tiny models: compile time dominates, so compile without most optimizations (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


def _init(model, shape):
    return model.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), train=False)


@pytest.mark.parametrize("arch", sorted(HEAD_NAMES))
def test_features_only_keeps_parameter_names(arch):
    model = models.create_model(arch, num_classes=10)
    shape = (32, 32, 3)
    split = heads.split_classifier(model, shape)
    assert split.head_name == HEAD_NAMES[arch]
    full = jax.eval_shape(lambda: _init(model, shape))
    body = jax.eval_shape(lambda: _init(split.body, shape))

    def names(tree):
        return {"/".join(str(k.key) for k in p) for p, _ in jax.tree.leaves_with_path(tree)}

    assert names(body["params"]) == {
        n for n in names(full["params"]) if not n.startswith(split.head_name + "/")
    }
    assert jax.tree.map(lambda x: x.shape, body["batch_stats"]) == jax.tree.map(
        lambda x: x.shape, full["batch_stats"]
    )
    assert full["params"][split.head_name]["kernel"].shape == (split.num_features, 10)


def test_plain_head_reproduces_the_student():
    model = models.create_model("digits_cnn_small", num_classes=10)
    variables = _init(model, (8, 8, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 8, 8, 1))
    split = heads.split_classifier(model, (8, 8, 1))
    headed, hv = heads.headed(
        split, heads.body_variables(variables, split), heads.plain_head_params(variables, split)
    )
    np.testing.assert_allclose(
        headed.apply(hv, x, train=False), model.apply(variables, x, train=False), atol=1e-6
    )


def _features_and_targets(n=400, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, d)), 0.0)
    x[:, 2] = 0.5  # a dead channel: constant, MARS cannot use it
    y = np.stack([np.maximum(x[:, 0] - 0.3, 0) * 2 - x[:, 1], x[:, 3] - np.maximum(0.8 - x[:, 4], 0),
                  0.5 * x[:, 5]], 1)[:, :k] + 0.01 * rng.normal(size=(n, k))  # fmt: skip
    return x, y


def _mlp(params, x):
    return np.asarray(heads.head_module(params).apply({"params": params}, jnp.asarray(x)))


def test_mars_head_equals_the_mars_prediction_on_and_off_the_fit_range():
    x, y = _features_and_targets()
    model, columns = heads.mars_fit(x, y, max_terms=None, thresh=1e-3)
    assert 2 not in columns and len(model.terms_) > 2
    params = heads.mars_head_params(model, columns, x.shape[1])
    assert params["Dense_0"]["kernel"].shape[0] == x.shape[1]
    far = np.random.default_rng(1).uniform(-3, 3 * x.max(), size=(200, x.shape[1]))
    scale = np.ptp(y)
    for points in (x, far):
        want = model.predict(points[:, columns])
        with jax.default_matmul_precision("highest"):
            got = _mlp(params, points)
        np.testing.assert_allclose(got, want, rtol=0, atol=EXACT_RTOL * scale * 10)
    # The unbalanced conversion is the same function.
    plain = heads.mars_head_params(model, columns, x.shape[1], balance=False)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(_mlp(plain, far), _mlp(params, far), atol=1e-3)


def test_mars_head_in_the_student_equals_mars_on_its_features():
    model = models.create_model("digits_cnn_tiny", num_classes=10)
    variables = _init(model, (8, 8, 1))
    split = heads.split_classifier(model, (8, 8, 1))
    body_vars = heads.body_variables(variables, split)
    images = jax.random.normal(jax.random.PRNGKey(2), (100, 8, 8, 1))
    with jax.default_matmul_precision("highest"):
        feats = np.asarray(split.body.apply(body_vars, images, train=False), np.float64)
    targets = np.sin(feats[:, :3] * 3.0) + feats[:, 3:6] ** 2
    mars, columns = heads.mars_fit(feats, targets, max_terms=7, thresh=1e-3)
    headed, hv = heads.headed(
        split, body_vars, heads.mars_head_params(mars, columns, feats.shape[1])
    )
    with jax.default_matmul_precision("highest"):
        got = np.asarray(headed.apply(hv, images, train=False))
    np.testing.assert_allclose(
        got, mars.predict(feats[:, columns]), atol=EXACT_RTOL * 10 * np.ptp(targets)
    )


def test_linear_fit_recovers_a_linear_map_and_linear_mars_is_the_sum():
    x = np.random.default_rng(5).uniform(0, 2, size=(300, 6))
    w = np.arange(18, dtype=np.float64).reshape(6, 3) / 10
    y = x @ w + np.array([1.0, -2.0, 0.5])
    lin = heads.linear_fit(x, y)
    np.testing.assert_allclose(lin["Dense_0"]["bias"], [1.0, -2.0, 0.5], atol=1e-4)
    np.testing.assert_allclose(_mlp(lin, x), y, atol=1e-4)
    xm, target = _features_and_targets(seed=3)
    model, columns = heads.mars_fit(xm, target, max_terms=11, thresh=1e-3)
    mars = heads.mars_head_params(model, columns, 6)
    both = heads.linear_mars_params(lin, mars)
    points = np.random.default_rng(4).normal(size=(50, 6))  # negative features too
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(
            _mlp(both, points), _mlp(lin, points) + _mlp(mars, points), atol=1e-4
        )


def test_random_features_head_has_a_least_squares_readout():
    x, y = _features_and_targets()
    params = heads.random_features_params(jax.random.PRNGKey(0), x, y, width=9)
    hidden = np.maximum(x @ np.asarray(params["Dense_0"]["kernel"], np.float64), 0)
    residual = y - _mlp(params, x)
    # Normal equations: the residual is orthogonal to every hidden unit and the constant.
    design = np.concatenate([hidden, np.ones((len(x), 1))], 1)
    assert np.abs(design.T @ residual).max() < 1e-3 * len(x)


def test_fit_heads_reports_each_head():
    x, y = _features_and_targets()
    plain = heads.linear_fit(x, y)
    inputs = fit.FitInputs(x, y, plain, max_terms=None, thresh=1e-3, key=jax.random.PRNGKey(0))
    built = fit.fit_heads(tuple(fit.HEADS), inputs)
    assert list(built) == list(fit.HEADS)
    assert built["random_features"][1]["hidden_units"] == built["mars"][1]["hidden_units"]
    assert built["linear_mars"][1]["pool_rsq"] >= built["linear"][1]["pool_rsq"] - 1e-9
    assert built["linear_mars"][1]["hidden_units"] > 2 * x.shape[1]  # the linear part's units
    assert built["plain"][1]["hidden_units"] == 0 and built["plain"][1]["parameters"] == 6 * 3 + 3
    with pytest.raises(ValueError, match="'nope'"):
        fit.fit_heads(("nope",), inputs)


class _ConvHead(nn.Module):
    """A classifier whose head is a convolution: `features_only` drops no Dense layer."""

    num_classes: int = 10
    features_only: bool = False

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(self.num_classes, (3, 3))(x)
        return x if self.features_only else x.mean((1, 2))


def test_a_student_without_a_dense_head_is_refused():
    with pytest.raises(ValueError, match="Generator has no 'features_only'"):
        heads.split_classifier(models.create_model("generator"), (8, 8, 1))
    with pytest.raises(ValueError, match="_ConvHead's head is not one Dense layer"):
        heads.split_classifier(_ConvHead(), (8, 8, 1))


def test_an_empty_pool_or_no_rows_is_refused():
    with pytest.raises(ValueError, match=r"pool.size=0"):
        job.pool_images(pool_lib.init_pool(4, (8, 8, 1), "uint8"))
    with pytest.raises(ValueError, match="No rows"):
        heads.linear_fit(np.zeros((0, 3)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="constant"):
        heads.mars_fit(np.ones((50, 3)), np.zeros((50, 2)), max_terms=None, thresh=1e-3)


def test_head_mode_trains_the_head_only():
    config = load_config("dfkd_digits.py:fast5,runlocal")
    info = data.get_info("digits")
    model = models.create_model("digits_cnn_tiny", num_classes=10)
    variables = _init(model, (8, 8, 1))
    split = heads.split_classifier(model, (8, 8, 1))
    pool = pool_lib.add(
        pool_lib.init_pool(32, (8, 8, 1), "uint8"),
        jax.random.uniform(jax.random.PRNGKey(3), (32, 8, 8, 1)),
    )
    for mode in finetune.MODES:
        hmodel, hv = heads.headed(
            split,
            heads.body_variables(variables, split),
            heads.plain_head_params(variables, split),
            freeze_body=mode == "head",
        )
        tx = finetune.make_optimizer(config, mode, hv["params"])
        step = finetune.make_step(config, model=hmodel, teacher=model, tx=tx, info=info)
        out, losses = finetune.finetune(step, hv, tx, pool, variables, jax.random.PRNGKey(0), 3)
        assert losses.shape == (3,) and np.all(np.isfinite(losses))
        same = lambda a, b: all(  # noqa: E731
            np.array_equal(u, v)
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )
        body_kept = same(out["params"]["body"], hv["params"]["body"]) and same(
            out["batch_stats"], hv["batch_stats"]
        )
        assert body_kept == (mode == "head")
        assert not same(out["params"]["head"], hv["params"]["head"])


def _tiny_config(teacher_dir, **mars_head):
    config = load_config("dfkd_digits.py:fast2,runlocal")
    config.teacher.checkpoint = teacher_dir
    config.mars_head.update(mars_head)
    return config


def _arms(workdir):
    with open(os.path.join(workdir, job.OUTPUT_DIR, job.ARMS_FILE)) as f:
        records = [json.loads(line) for line in f]
    return {(r["head"], r["mode"], r["seed"]): {k: v for k, v in r.items() if k != "seconds"}
            for r in records}  # fmt: skip


@pytest.mark.slow  # a distillation, the MARS phase and a resume: 26 s
def test_phase_after_distillation_then_resume_after_a_kill(teacher_dir, tmp_path, monkeypatch):
    config = _tiny_config(teacher_dir, enabled=True, heads=("plain", "mars"), modes=("head",))
    full = str(tmp_path / "full")
    summary = main.run(config, full)
    phase = summary["mars_head"]
    assert set(phase["heads"]) == {"plain", "mars"}
    # The student's own head as fit is the distilled student.
    assert phase["heads"]["plain"]["fit"]["test_accuracy"] == summary["student_test_accuracy"]
    assert phase["heads"]["mars"]["fit"]["mars_terms"] >= 2
    for name in ("fits.json", "heads.npz", "arms.jsonl", "summary.json", "results.md"):
        assert os.path.exists(os.path.join(full, job.OUTPUT_DIR, name))
    want = _arms(full)
    assert len(want) == 2

    # The same phase as its own job, killed after one arm, then resumed.
    killed = str(tmp_path / "killed")
    shutil.copytree(full, killed)
    shutil.rmtree(os.path.join(killed, job.OUTPUT_DIR))
    config = _tiny_config(teacher_dir, heads=("plain", "mars"), modes=("head",))
    config.job = "mars_head"
    calls = []
    run_arm = job.run_arm

    def dying(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(args[1:])
        return run_arm(*args, **kwargs)

    monkeypatch.setattr(job, "run_arm", dying)
    with pytest.raises(KeyboardInterrupt):
        main.run(config, killed)
    monkeypatch.setattr(fit, "fit_heads", None)  # the fits are read back, not redone
    calls.clear()
    monkeypatch.setattr(job, "run_arm", lambda *a, **k: calls.append(a[1:]) or run_arm(*a, **k))
    main.run(config, killed)
    assert len(calls) == len(want) - 1
    assert _arms(killed) == want

    # A run that has not reached config.epochs is refused.
    config.epochs += 1
    with pytest.raises(ValueError, match=f"stopped at epoch {config.epochs - 1} of epochs="):
        main.run(config, killed)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("heads", ("plain", "nope"), "mars_head.heads"),
        ("heads", ("plain", "plain"), "mars_head.heads"),
        ("modes", (), "mars_head.modes"),
        ("seeds", 0, "mars_head.seeds"),
        ("epochs", 0, "mars_head.epochs"),
        ("max_terms", 1, "mars_head.max_terms"),
        ("thresh", 1.0, "mars_head.thresh"),
        ("lr_factor", 0.0, "mars_head.lr_factor"),
    ],
)
def test_bad_config_is_refused_before_compute(teacher_dir, tmp_path, key, value, message):
    config = _tiny_config(teacher_dir)
    config.mars_head[key] = value
    with pytest.raises(ValueError, match=message):
        job.validate(config)
    # As a follow-up of the dfkd job: refused before the distillation starts.
    config.mars_head.enabled = True
    with pytest.raises(ValueError, match=message):
        main.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_a_missing_or_unfinished_run_is_refused(teacher_dir, tmp_path):
    config = _tiny_config(teacher_dir)
    config.job = "mars_head"
    with pytest.raises(ValueError, match="No distillation checkpoints"):
        main.run(config, str(tmp_path / "none"))
