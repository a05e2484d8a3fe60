"""The converted networks equal the MARS model (or its documented surrogate) everywhere."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spline import (
    MARS,
    MLP,
    mars_dense_stack,
    min_widths,
    surrogate_coef,
    surrogate_predict,
    to_dense,
)
from spline.basis import LINEAR
from spline.convert import spare_terms_of, unit_count
from tests.spline.conftest import mlp_float64

N_FEATURES = 3


def _data(n=300, seed=0, outputs=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, N_FEATURES)) * np.array([1.0, 5.0, 0.2]) + np.array(
        [0.0, 10.0, -3.0]
    )
    # Two values: ties, and earth enters a predictor linearly when no knot beats the line.
    x[:, 2] = np.where(x[:, 2] > -3.0, -2.8, -3.2)
    base = np.sin(2 * x[:, 0]) + np.abs(x[:, 1] - 10.0) / 5 + 4 * x[:, 2]
    y = np.stack([base * (k + 1) + 0.05 * rng.normal(size=n) for k in range(outputs)], 1)
    return x, (y[:, 0] if outputs == 1 else y)


@pytest.fixture(scope="module")
def fitted():
    x, y = _data()
    return x, MARS(max_terms=11).fit(x, y)


@pytest.fixture(scope="module")
def fitted_pruned():
    # thresh 0: the forward pass runs to max_terms and the backward pass prunes some of them.
    x, y = _data()
    model = MARS(max_terms=21, thresh=0.0).fit(x, y)
    assert len(model.terms_) < len(model.forward_terms_)
    return x, model


@pytest.fixture(scope="module")
def fitted_multi():
    x, y = _data(outputs=2, seed=1)
    return x, MARS(max_terms=11).fit(x, y)


def _test_points(x, seed=7):
    # Inside the training range and well outside it (3x the range, both sides).
    rng = np.random.default_rng(seed)
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    return rng.uniform(lo - 3 * span, hi + 3 * span, size=(200, x.shape[1]))


def _net(params, z):
    n = len(params)
    feats = [params[f"Dense_{i}"]["bias"].shape[0] for i in range(n)]
    return np.asarray(MLP(features=feats).apply({"params": params}, jnp.asarray(z)), np.float64)


def _assert_extra_units_silent(params, need):
    """Units past ``need[i]`` in hidden layer i have random incoming weights and send nothing to
    the needed units of layer i + 1 (all outputs for the last layer), at every depth."""
    n = len(params)
    for i in range(n - 1):
        width = params[f"Dense_{i}"]["bias"].shape[0]
        nxt = np.asarray(params[f"Dense_{i + 1}"]["kernel"])
        need_next = nxt.shape[1] if i + 1 == n - 1 else need[i + 1]
        assert np.all(nxt[need[i] :, :need_next] == 0), f"layer {i} extra units leak"
        if width > need[i]:
            assert np.std(np.asarray(params[f"Dense_{i}"]["kernel"])[:, need[i] :]) > 0


def _expected(model, x):
    out = model.predict(x)
    return out[:, None] if out.ndim == 1 else out


def _tol(model, x):
    return 1e-5 * (1 + np.abs(_expected(model, x)).max())


def test_exact_conversion_has_one_unit_per_hinge(fitted):
    x, model = fitted
    params = to_dense(model)
    n_lin = sum(t.direction == LINEAR for t in model.terms_[1:])
    assert params["Dense_0"]["kernel"].shape == (N_FEATURES, len(model.terms_) - 1 + n_lin)
    assert min_widths(model) == [len(model.terms_) - 1 + n_lin]
    assert n_lin >= 1  # the fixture exercises linear terms


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"standardize": True},
        {"balance": True},
        {"widths": [40], "key": 1},
        {"widths": [40, 40, 50], "key": 2},
        {"standardize": True, "balance": True, "widths": [30, 30], "key": 3},
    ],
    ids=["plain", "standardized", "balanced", "wider", "deeper", "all"],
)
@pytest.mark.parametrize("which", ["single", "multi"])
def test_network_equals_mars_everywhere(fitted, fitted_multi, options, which):
    x, model = fitted if which == "single" else fitted_multi
    kwargs = dict(options)
    mean, std = np.zeros(N_FEATURES), np.ones(N_FEATURES)
    if kwargs.pop("standardize", False):
        mean, std = x.mean(0), x.std(0)
        kwargs.update(input_mean=mean, input_std=std)
    if "key" in kwargs:
        kwargs["key"] = jax.random.key(kwargs["key"])
    with jax.enable_x64(True):
        params = to_dense(model, dtype=jnp.float64, **kwargs)
        for pts in (x, _test_points(x)):
            got = _net(params, (pts - mean) / std)
            np.testing.assert_allclose(got, _expected(model, pts), atol=_tol(model, pts))
    if "widths" in options:
        widths = options["widths"]
        assert [params[f"Dense_{i}"]["bias"].shape[0] for i in range(len(widths))] == widths
        # Extra units: random incoming weights, zero outgoing weights, in every layer.
        _assert_extra_units_silent(params, min_widths(model) * len(widths))


@pytest.mark.parametrize("widths", [[30], [30, 30], [30, 34, 40]])
def test_spare_terms_are_silent_pruned_hinges(fitted_pruned, widths):
    x, model = fitted_pruned
    mean, std = x.mean(0), x.std(0)
    need = min_widths(model)[0]
    spare = spare_terms_of(model, 30 - need)
    assert spare  # the fixture's backward pass prunes terms
    n_spare = sum(unit_count(t) for t in spare)
    with jax.enable_x64(True):
        params = to_dense(
            model,
            input_mean=mean,
            input_std=std,
            balance=True,
            widths=widths,
            key=jax.random.key(0),
            spare_terms=spare,
            random_scale=0.1,
            dtype=jnp.float64,
        )
        for pts in (x, _test_points(x)):
            got = _net(params, (pts - mean) / std)
            np.testing.assert_allclose(got, _expected(model, pts), atol=_tol(model, pts))
    w1 = np.asarray(params["Dense_0"]["kernel"])
    # Each spare unit is a hinge on its term's variable; with one hidden layer (nothing to balance
    # it against) its weight is 1 in standardized inputs.
    col = need
    for term in spare:
        for _ in range(unit_count(term)):
            nonzero = np.flatnonzero(w1[:, col])
            assert nonzero.tolist() == [term.variable]
            if len(widths) == 1:
                assert abs(w1[term.variable, col]) == pytest.approx(1.0)
            col += 1
    # Converted and spare units are carried by every deeper (identity) layer; random units are
    # silent at every depth and drawn at a tenth of the He scale.
    _assert_extra_units_silent(params, [need + n_spare] * len(widths))
    for i in range(1, len(widths)):
        k = np.asarray(params[f"Dense_{i}"]["kernel"])[: need + n_spare, : need + n_spare]
        # Identity up to the balancing's positive diagonal rescaling.
        np.testing.assert_array_equal(k != 0, np.eye(need + n_spare, dtype=bool))
        assert np.all(np.diag(k) > 0)
    rand = w1[:, need + n_spare :]
    assert np.std(rand) == pytest.approx(0.1 * np.sqrt(2.0 / N_FEATURES), rel=0.35)


def test_spare_terms_of_takes_a_prefix_that_fits(fitted_pruned):
    _, model = fitted_pruned
    kept = {id(t) for t in model.terms_}
    pruned = [t for t in model.forward_terms_ if not t.is_intercept and id(t) not in kept]
    assert spare_terms_of(model, 10**6) == pruned
    # From a longer fit: its hinges minus the model's own terms.
    longer = MARS(max_terms=31, thresh=0.0).fit(*_data())
    own = {(t.variable, t.knot, t.direction) for t in model.terms_}
    extra = spare_terms_of(model, 10**6, longer)
    assert len(extra) > len(pruned)
    assert not own & {(t.variable, t.knot, t.direction) for t in extra}
    assert spare_terms_of(model, 0) == []
    first = spare_terms_of(model, unit_count(pruned[0]))
    assert first == pruned[:1]


def test_balance_equalizes_norms(fitted):
    _, model = fitted
    params = to_dense(model, balance=True)
    w1, b1 = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
    w2 = np.asarray(params["Dense_1"]["kernel"])
    n_in = np.sqrt(np.sum(w1**2, 0) + b1**2)
    n_out = np.sqrt(np.sum(w2**2, 1))
    np.testing.assert_allclose(n_in, n_out, rtol=1e-4)


def test_float32_network_close_to_mars(fitted):
    x, model = fitted
    mean, std = x.mean(0), x.std(0)
    params = to_dense(model, input_mean=mean, input_std=std)
    got = _net(params, ((x - mean) / std).astype(np.float32))
    np.testing.assert_allclose(
        got[:, 0], model.predict(x), atol=1e-4 * np.abs(model.predict(x)).max()
    )


def test_dense_stack_initializers(fitted):
    x, model = fitted
    mean, std = x.mean(0), x.std(0)
    head = mars_dense_stack(model, widths=[32, 32], input_mean=mean, input_std=std, balance=True)
    z = jnp.asarray((x - mean) / std, jnp.float32)
    variables = head.init(jax.random.key(0), z)
    assert variables["params"]["Dense_0"]["kernel"].shape == (N_FEATURES, 32)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(head.apply(variables, z))[:, 0]
    np.testing.assert_allclose(out, model.predict(x), atol=1e-4 * (1 + np.abs(out).max()))

    # As the head of another Linen model.
    class WithHead(nn.Module):
        head: nn.Module

        @nn.compact
        def __call__(self, z):
            return self.head(nn.Dense(N_FEATURES, name="body")(z))

    v2 = WithHead(head=head).init(jax.random.key(1), z)
    assert "head" in v2["params"]
    # A layer asking for another shape gets a clear error.
    bad = MLP(features=(16, 1), kernel_inits=head.kernel_inits[:2])
    with pytest.raises(ValueError, match="shape"):
        bad.init(jax.random.key(0), z)


@pytest.mark.parametrize("precision", ["bfloat16", "tensorfloat32", "highest"])
def test_initializer_values_do_not_depend_on_matmul_precision(fitted, precision):
    # A GPU's default float32 precision is TF32; the conversion must give the same values. All
    # of it is numpy float64 cast once, so the values equal the float64 conversion rounded.
    x, model = fitted
    mean, std = x.mean(0), x.std(0)
    need = min_widths(model)[0]
    conversion = dict(widths=[need, need], input_mean=mean, input_std=std, balance=True)
    with jax.enable_x64(True):
        exact = to_dense(model, dtype=jnp.float64, **conversion)
    z = jnp.asarray((x - mean) / std, jnp.float32)
    with jax.default_matmul_precision(precision):
        variables = mars_dense_stack(model, **conversion).init(jax.random.key(0), z)
    for layer, values in exact.items():
        for name, value in values.items():
            np.testing.assert_array_equal(
                np.asarray(variables["params"][layer][name]), np.asarray(value, np.float32)
            )
    got = mlp_float64(variables["params"], z)[:, 0]
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5 * (1 + np.abs(got).max()))


def test_degree2_needs_surrogate_and_surrogate_is_exact():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(500, 2))
    y = 4 * np.maximum(0, x[:, 0]) * np.maximum(0, x[:, 1]) + 0.01 * rng.normal(size=500)
    model = MARS(max_terms=9, degree=2).fit(x, y)
    assert model.max_degree_ == 2
    with pytest.raises(ValueError, match="not piecewise linear"):
        to_dense(model)
    with pytest.raises(ValueError, match="needs x"):
        to_dense(model, surrogate="min")
    with pytest.raises(ValueError, match="unknown surrogate"):
        to_dense(model, surrogate="product", x=x)
    coef = surrogate_coef(model, x)
    with jax.enable_x64(True):
        params = to_dense(
            model,
            surrogate="min",
            x=x,
            dtype=jnp.float64,
            widths=[20, 30, 30],
            key=jax.random.key(0),
        )
        for pts in (x, _test_points(x)):
            np.testing.assert_allclose(
                _net(params, pts), surrogate_predict(model, pts, coef), atol=1e-9
            )
    # The surrogate approximates the MARS model on the data.
    err = surrogate_predict(model, x, coef)[:, 0] - model.predict(x)
    assert np.sqrt(np.mean(err**2)) < 0.3 * np.std(model.predict(x))


def test_conversion_errors(fitted):
    _, model = fitted
    with pytest.raises(ValueError, match="key"):
        to_dense(model, widths=[50])
    with pytest.raises(ValueError, match="at least"):
        to_dense(model, widths=[2], key=jax.random.key(0))
    with pytest.raises(ValueError, match="input_mean"):
        to_dense(model, input_mean=np.zeros(2))
    with pytest.raises(ValueError, match="not fitted"):
        to_dense(MARS())
    with pytest.raises(ValueError, match="random_scale"):
        to_dense(model, random_scale=-1.0)
    degree2 = model.terms_[1].__class__(0, 0.5, 1, model.terms_[1])
    with pytest.raises(ValueError, match="degree-1"):
        to_dense(model, spare_terms=[degree2])
