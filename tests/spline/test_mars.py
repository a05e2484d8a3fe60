"""Tests of the MARS estimator: known fits, earth's rules, invariances, bad input."""

import math

import numpy as np
import pytest

from spline import MARS
from spline import forward as fwd
from spline.basis import HINGE_DOWN, HINGE_UP, LINEAR


def friedman1(n, seed=0, noise=1.0, d=10):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + noise * rng.normal(size=n)
    )
    return x, y


def test_spans_match_earth():
    # Values printed by earth 5.3.2 with trace=2 ("minspan 7 endspan 10" etc.).
    assert (fwd.default_minspan(1000, 10), fwd.default_endspan(10)) == (7, 10)
    assert (fwd.default_minspan(1000, 2), fwd.default_endspan(2)) == (6, 8)
    assert (fwd.default_minspan(200, 5), fwd.default_endspan(5)) == (5, 9)
    assert (fwd.default_minspan(50000, 3), fwd.default_endspan(3)) == (8, 8)
    assert (fwd.default_minspan(100000, 10), fwd.default_endspan(10)) == (9, 10)


def test_candidate_grid_is_earths():
    xs = np.arange(1000.0)
    pos = fwd.candidate_positions(xs, np.ones(1000, bool), minspan=7, endspan=10)
    # earth's knots (minspan 7, endspan 10) sit at ranks r with r + 1 = 7k (seen in its traces).
    assert pos[-1] == 986 and pos[0] == 13
    assert np.all(np.diff(pos) == 7)
    root, valid = fwd.root_candidates(xs, 7, 10)
    np.testing.assert_array_equal(root[valid], pos)


def test_candidates_follow_support():
    support = np.zeros(30, bool)
    support[::2] = True
    pos = fwd.candidate_positions(np.arange(30.0), support, minspan=2, endspan=1)
    assert np.all(support[pos])
    # Support ranks 1, 3, ..., 13 (r + 1 a multiple of 2), keeping one support row above.
    np.testing.assert_array_equal(pos, 2 * np.arange(1, 14, 2))


def test_recovers_single_hinge_exactly():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(400, 3))
    knot = np.sort(x[:, 1])[250]  # on a data point, where MARS places knots
    y = 3.0 * np.maximum(0.0, x[:, 1] - knot) + 1.0
    model = MARS(max_terms=5, minspan=1, endspan=1).fit(x, y)
    assert model.selected_variables() == [1]
    assert model.rsq_ > 1 - 1e-9
    hinge = [t for t in model.terms_ if t.direction == HINGE_UP]
    assert len(hinge) == 1 and hinge[0].knot == knot
    np.testing.assert_allclose(model.predict(x), y, atol=1e-7)


def test_binary_predictor_enters_linearly_as_in_earth():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(300, 3))
    x[:, 2] = rng.integers(0, 2, 300)
    y = 3.0 * x[:, 2] + np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=300)
    model = MARS(max_terms=11).fit(x, y)
    # earth 5.3.2 on the same data (nk = 11): terms V3, h(0.48491-V1), h(V1-0.48491),
    # coefficient of V3 2.982620, GCV 0.01351817.
    assert [t.name() for t in model.terms_] == [
        "(Intercept)",
        "x2",
        "h(x0-0.48491)",
        "h(0.48491-x0)",
    ]
    assert model.coef_[1] == pytest.approx(2.982620, abs=1e-6)
    assert model.gcv_ == pytest.approx(0.01351817, rel=1e-6)


def test_friedman1_matches_earth_reference():
    # earth 5.3.2 (nk = 21) on the same data (this generator, written to CSV) selects 13 terms on
    # x1..x5 with GCV 2.949579 and RSq 0.8912562 (docs/spline.md).
    x, y = friedman1(1000, seed=1)
    model = MARS(max_terms=21).fit(x, y)
    assert model.selected_variables() == [0, 1, 2, 3, 4]
    assert model.minspan_ == 7 and model.endspan_ == 10
    assert len(model.terms_) == 13
    assert model.gcv_ == pytest.approx(2.949579, rel=1e-6)
    assert model.rsq_ == pytest.approx(0.8912562, rel=1e-6)
    # earth's knots (printed to 6 digits): h(0.980737-V4), h(V2-0.504091), h(V3-0.709035).
    knots = {(t.variable, t.direction): round(t.knot, 6) for t in model.terms_[1:]}
    assert knots[(3, -1)] == 0.980737 and knots[(1, 1)] in (0.504091, 0.823421)
    resid = y - model.predict(x)
    n, c = len(y), len(model.terms_) + (len(model.terms_) - 1)
    np.testing.assert_allclose(model.gcv_, np.sum(resid**2) / (n * (1 - c / n) ** 2), rtol=1e-10)


def test_gcv_formula():
    # earth: C = terms + penalty * (terms - 1) / 2.
    assert fwd.gcv(100.0, 3, 100, 2.0) == pytest.approx(100.0 / (100 * (1 - 5 / 100) ** 2))
    assert fwd.gcv(1.0, 60, 100, 2.0) == math.inf


def test_sklearn_api():
    x, y = friedman1(300)
    model = MARS(max_terms=11, degree=1)
    assert model.get_params()["max_terms"] == 11
    model.fit(x, y)
    assert model.coef_.shape == (len(model.terms_),)
    assert model.score(x, y) == pytest.approx(model.rsq_, rel=1e-9)
    text = model.summary()
    assert "(Intercept)" in text and "GCV" in text
    for t in model.terms_[1:]:
        assert t.direction in (HINGE_UP, HINGE_DOWN, LINEAR) and t.parent.is_intercept


def test_multi_output_shares_basis():
    x, y = friedman1(400, seed=2)
    y2 = np.stack([y, -2.0 * y + 1.0], 1)
    model = MARS(max_terms=15).fit(x, y2)
    assert model.coef_.shape == (2, len(model.terms_))
    pred = model.predict(x)
    assert pred.shape == (400, 2)
    # An affine image of the same target: same basis, coefficients transformed exactly.
    np.testing.assert_allclose(pred[:, 1], -2.0 * pred[:, 0] + 1.0, atol=1e-8)


def test_invariant_to_input_affine_map():
    x, y = friedman1(500, seed=3)
    a = MARS(max_terms=11).fit(x, y)
    b = MARS(max_terms=11).fit(3.0 * x - 7.0, y)
    assert a.gcv_ == pytest.approx(b.gcv_, rel=1e-8)
    for ta, tb in zip(a.terms_[1:], b.terms_[1:], strict=True):
        assert (ta.variable, ta.direction) == (tb.variable, tb.direction)
        if ta.direction != LINEAR:
            assert 3.0 * ta.knot - 7.0 == pytest.approx(tb.knot)


def test_pruning_never_worsens_gcv_and_thresh_stops_early():
    x, y = friedman1(500, seed=4)
    model = MARS(max_terms=21).fit(x, y)
    assert len(model.terms_) <= len(model.forward_terms_)
    coarse = MARS(max_terms=21, thresh=0.05).fit(x, y)
    assert len(coarse.forward_terms_) < len(model.forward_terms_)


def test_degree2_finds_interaction():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, size=(800, 3))
    y = np.maximum(0, x[:, 0]) * np.maximum(0, x[:, 1]) * 4 + 0.01 * rng.normal(size=800)
    d1 = MARS(max_terms=11, degree=1).fit(x, y)
    d2 = MARS(max_terms=11, degree=2).fit(x, y)
    assert d2.max_degree_ == 2 and d1.max_degree_ == 1
    assert d2.rsq_ > d1.rsq_ + 0.05
    inter = [t for t in d2.terms_ if t.degree == 2]
    assert all(len(t.variables()) == 2 for t in inter)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.full((50, 2), np.nan), np.zeros(50), "NaN or inf"),
        (np.ones((50, 2)) * np.arange(50)[:, None], np.full(50, np.inf), "NaN or inf"),
        (np.arange(100.0).reshape(50, 2), np.zeros(49), "mismatched lengths"),
        (np.arange(10.0).reshape(5, 2), np.zeros(5), "too few rows"),
        (np.c_[np.arange(50.0), np.ones(50)], np.zeros(50), "constant column"),
    ],
)
def test_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        MARS().fit(x, y)


def test_bad_params_and_unfitted():
    x, y = friedman1(100)
    with pytest.raises(ValueError, match="degree"):
        MARS(degree=3).fit(x, y)
    with pytest.raises(ValueError, match="minspan"):
        MARS(minspan=-2).fit(x, y)
    with pytest.raises(ValueError, match="not fitted"):
        MARS().predict(x)
    model = MARS(max_terms=5).fit(x, y)
    with pytest.raises(ValueError, match="shape"):
        model.predict(x[:, :3])


def test_x64_is_scoped():
    import jax.numpy as jnp

    x, y = friedman1(100)
    MARS(max_terms=5).fit(x, y)
    assert jnp.zeros(1).dtype == jnp.float32
