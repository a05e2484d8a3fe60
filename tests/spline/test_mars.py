"""Tests of the MARS estimator: earth's rules with known values, invariances, bad input.

Parity with R's earth itself is in ``test_mars_earth.py``; scikit-learn conformance in
``test_mars_sklearn.py``.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from spline import MARS, backward, candidates, fastk, forward, forward_loop, forward_state, spans
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


def same_model(a, b):
    assert [t.name() for t in a.terms_] == [t.name() for t in b.terms_]
    assert [t.name() for t in a.forward_terms_] == [t.name() for t in b.forward_terms_]
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.gcv_ == b.gcv_


def test_spans_match_earth():
    # Values printed by earth 5.3.2 with trace=2 ("minspan 7 endspan 10" etc.).
    for n, p, span, end in [
        (1000, 10, 7, 10),
        (1000, 2, 6, 8),
        (200, 5, 5, 9),
        (50000, 3, 8, 8),
        (100000, 10, 9, 10),
    ]:
        assert spans.minspan(n, n, p) == span
        assert spans.endspan(n, p, 1) == end
    # Interaction terms: endspan + int(2 endspan + 0.5); capped at N // 2 - 1.
    assert spans.endspan(1000, 10, 2) == 30
    assert spans.endspan(40, 10, 2) == 19
    # A negative minspan asks for that many knots: minspan ceil(N / (1 + k)).
    assert spans.minspan(100, 100, 10, -4) == 20
    assert spans.startspan(100, 10, 20, -4) == 19


def test_root_grid_is_centred_as_in_earth():
    # N = 442, p = 10: endspan 10, minspan 6; 422 free rows leave 2 over: the first knot sits
    # 10 + 1 rows below the top (earth's nStartSpan), then every 6th row down to row 10.
    end, span = spans.endspan(442, 10, 1), spans.minspan(442, 442, 10)
    start = spans.startspan(442, end, span)
    assert (end, span, start) == (10, 6, 11)
    pos = spans.root_grid(np.arange(442.0), end, span, start, weighted=False)
    assert pos[0] == 430 and pos[-1] >= 10 and pos[-1] - 6 < 10
    assert np.all(np.diff(pos) == -6)
    # A knot at a value tied with the maximum gives a zero hinge: earth starts counting below
    # the tied rows (five here, so four positions lower than with distinct values), except
    # with weights.
    xs = np.r_[np.arange(437.0), np.full(5, 999.0)]
    assert spans.root_grid(xs, end, span, start, weighted=False)[0] == 430 - 4
    assert spans.root_grid(xs, end, span, start, weighted=True)[0] == 430


def test_gcv_formula():
    # earth: C = terms + penalty * (terms - 1) / 2; penalty -1 makes terms free.
    assert forward_state.gcv(100.0, 3, 100, 2.0) == pytest.approx(
        100.0 / (100 * (1 - 5 / 100) ** 2)
    )
    assert forward_state.gcv(1.0, 60, 100, 2.0) == math.inf
    assert forward_state.gcv(50.0, 60, 100, -1) == 0.5


def test_bucket_and_cumsum():
    assert [forward.bucket(n) for n in (1, 8, 9, 16, 17, 100, 1001)] == [1, 8, 9, 16, 18, 104, 1024]
    v = np.random.default_rng(0).normal(size=(3, 1000))
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            candidates.cumsum(jnp.asarray(v)), np.cumsum(v, 1), rtol=1e-12, atol=1e-12
        )


def test_queue_orders_by_aged_rank():
    # Entries 0..3 scored 5, inf, 3, inf when the model had 9, 3, 9, 7 term slots. By RSS drop
    # (descending, then index): 1, 3, 0, 2, i.e. ranks 2, 0, 3, 1. Aged at 9 slots with beta 1:
    # 2 + 0, 0 + 6, 3 + 0, 1 + 2; ties (entries 2 and 3 at 3) go to the larger drop.
    with jax.enable_x64(True):
        q = fastk.init(8, 10.0).replace(
            rss=jnp.array([5.0, jnp.inf, 3.0, jnp.inf, -1, -1, -1, -1]),
            n_terms=jnp.array([9, 3, 9, 7, 0, 0, 0, 0], jnp.int32),
            size=jnp.int32(4),
        )
        assert list(np.asarray(fastk.sort(q, 9, 1.0).order[:4])) == [0, 3, 2, 1]
        assert list(np.asarray(fastk.sort(q, 9, 0.0).order[:4])) == [1, 3, 0, 2]
        sel, valid = fastk.select(fastk.sort(q, 9, 1.0), 6)
        assert list(np.asarray(valid)) == [True] * 4 + [False] * 2


def test_leaps_pruning_never_worse_than_the_elimination_path():
    rng = np.random.default_rng(0)
    r = np.triu(rng.normal(size=(12, 12))) + 5 * np.eye(12)
    z = rng.normal(size=(12, 1))
    t, zh, base = backward._triangular(r, z, 3.0)
    leaps, _ = backward._leaps_backward(t, zh, base)
    path, _ = backward._xtx_backward(t, zh, base)
    assert np.all(np.asarray(leaps) <= np.asarray(path) + 1e-12)
    assert leaps[-1] == pytest.approx(path[-1]) and leaps[0] == pytest.approx(path[0])


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
    assert sorted(t.name() for t in model.terms_) == sorted(
        ["(Intercept)", "x2", "h(x0-0.48491)", "h(0.48491-x0)"]
    )
    assert model.coef_[[t.name() for t in model.terms_].index("x2")] == pytest.approx(
        2.982620, abs=1e-6
    )
    assert model.gcv_ == pytest.approx(0.01351817, rel=1e-6)


def test_friedman1_matches_earth_reference():
    # earth 5.3.2 (nk = 21) on the same data selects 13 terms on x1..x5 with GCV 2.949579 and
    # RSq 0.8912562, knots h(0.980737-V4), h(V2-0.504091), h(V3-0.709035).
    x, y = friedman1(1000, seed=1)
    model = MARS(max_terms=21).fit(x, y)
    assert model.selected_variables() == [0, 1, 2, 3, 4]
    assert model.minspan_ == 7 and model.endspan_ == 10
    assert len(model.terms_) == 13
    assert model.gcv_ == pytest.approx(2.949579, rel=1e-6)
    assert model.rsq_ == pytest.approx(0.8912562, rel=1e-6)
    knots = {(t.variable, t.direction, round(t.knot, 6)) for t in model.terms_[1:]}
    assert {(3, -1, 0.980737), (1, 1, 0.504091), (2, 1, 0.709035)} <= knots
    resid = y - model.predict(x)
    n, c = len(y), len(model.terms_) + (len(model.terms_) - 1)
    np.testing.assert_allclose(model.gcv_, np.sum(resid**2) / (n * (1 - c / n) ** 2), rtol=1e-10)


def test_slots_count_two_per_step():
    # nk = 5 allows two steps (slots 1-2 and 3-4) whatever the steps add.
    x, y = friedman1(300)
    model = MARS(max_terms=5, thresh=0).fit(x, y)
    assert len(model.forward_terms_) <= 5 and model.stop_reason_ == "Reached nk"


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
    assert model.gcv_ == min(model.gcv_path_)
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


def test_fast_k_all_parents_is_never_worse_at_degree_2():
    x, y = friedman1(600, seed=6)
    fast = MARS(max_terms=21, degree=2, fast_k=3, thresh=0).fit(x, y)
    full = MARS(max_terms=21, degree=2, fast_k=0, thresh=0).fit(x, y)
    assert full.forward_rsq_ >= fast.forward_rsq_ - 1e-12


def test_collinearity_tol_is_opt_in():
    x, y = friedman1(400, seed=7)
    base = MARS(max_terms=21)
    assert base.get_params()["collinearity_tol"] is None
    tight = MARS(max_terms=21, collinearity_tol=1e-9, thresh=0).fit(x, y)
    loose = MARS(max_terms=21, collinearity_tol=0.5, thresh=0).fit(x, y)
    # A looser tolerance rejects more candidate hinges: never a better forward fit.
    assert loose.forward_rsq_ <= tight.forward_rsq_ + 1e-12


def test_sample_weight_semantics():
    x, y = friedman1(300, seed=8)
    plain = MARS(max_terms=11).fit(x, y)
    # earth: weights that are all equal mean no weights at all.
    same_model(plain, MARS(max_terms=11).fit(x, y, sample_weight=np.full(300, 3.0)))
    w = np.random.default_rng(0).uniform(0.5, 2.0, 300)
    weighted = MARS(max_terms=11).fit(x, y, sample_weight=w)
    assert weighted.weighted_ and not plain.weighted_
    # The coefficients are the weighted least-squares fit of the selected basis.
    b = weighted.transform(x)
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(b * sw[:, None], y * sw, rcond=None)[0]
    np.testing.assert_allclose(weighted.coef_, coef, rtol=1e-7, atol=1e-9)
    # Zero weights are raised to mean / 1e8 (earth's tweak.zero.weights): still a fit.
    w0 = w.copy()
    w0[:10] = 0.0
    assert MARS(max_terms=11).fit(x, y, sample_weight=w0).weighted_


def test_constant_columns_are_ignored_with_a_warning():
    x, y = friedman1(300, seed=9)
    x[:, 5] = 2.5
    x[:, 7] = -1.0
    with pytest.warns(UserWarning, match=re.escape("constant column(s) [5, 7]")):
        model = MARS(max_terms=11).fit(x, y)
    assert model.ignored_features_ == [5, 7]
    assert not {5, 7} & set(v for t in model.forward_terms_ for v in t.variables())


def test_full_precision_whatever_the_default():
    # The fit forces HIGHEST precision on every product: a reduced default changes nothing,
    # and the lowered forward pass has no product at a lower precision.
    x, y = friedman1(300, seed=10)
    ref = MARS(max_terms=11, degree=2).fit(x, y)
    for precision in ("bfloat16", "tensorfloat32"):
        with jax.default_matmul_precision(precision):
            same_model(ref, MARS(max_terms=11, degree=2).fit(x, y))
    with jax.enable_x64(True), jax.default_matmul_precision("bfloat16"):
        options = forward.Options(nk=11, degree=2, penalty=3.0)
        st, data, params, _ = forward._prepare(x, y[:, None], None, options)
        text = forward_loop.run.lower(st, data, params).as_text()
    dots = re.findall(r"stablehlo\.dot_general[^\n]*", text)
    assert dots and all("HIGHEST" in d for d in dots), [d for d in dots if "HIGHEST" not in d]


def test_nearby_sizes_share_one_compilation():
    x, y = friedman1(2100, seed=11)
    MARS(max_terms=11).fit(x[:2000], y[:2000])
    before = len(forward._COMPILED)
    MARS(max_terms=11).fit(x[:2040], y[:2040])  # same row bucket (2048)
    MARS(max_terms=11).fit(x[:2020] * 2.0 + 1.0, y[:2020])
    assert len(forward._COMPILED) == before


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.full((50, 2), np.nan), np.zeros(50), "NaN or inf"),
        (np.ones((50, 2)) * np.arange(50)[:, None], np.full(50, np.inf), "infinity"),
        (np.arange(100.0).reshape(50, 2), np.zeros(49), "inconsistent numbers of samples"),
        (np.arange(2.0).reshape(1, 2), np.zeros(1), "1 sample"),
    ],
)
def test_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        MARS().fit(x, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"degree": 0}, "degree"),
        ({"degree": 11}, "degree"),
        ({"degree": 1.5}, "degree"),
        ({"max_terms": 1001}, "max_terms"),
        ({"thresh": 1.0}, "thresh"),
        ({"thresh": -0.1}, "thresh"),
        ({"penalty": -2.0}, "penalty"),
        ({"penalty": 1001.0}, "penalty"),
        ({"minspan": 101}, "minspan"),
        ({"endspan": -1}, "endspan"),
        ({"endspan": 101}, "endspan"),
        ({"fast_beta": -1.0}, "fast_beta"),
        ({"collinearity_tol": 0.0}, "collinearity_tol"),
    ],
)
def test_bad_params_name_the_value(params, match):
    x, y = friedman1(100)
    with pytest.raises(ValueError, match=match):
        MARS(**params).fit(x, y)


@pytest.mark.parametrize(
    "weight, match",
    [
        (-np.ones(100), "Negative values"),
        (np.r_[np.nan, np.ones(99)], "NaN"),
        (np.ones(99), r"sample_weight.shape == \(99,\)"),
        (np.r_[1e-7, np.zeros(99)], "mean of sample_weight"),
    ],
)
def test_bad_sample_weight(weight, match):
    x, y = friedman1(100)
    with pytest.raises(ValueError, match=match):
        MARS(max_terms=5).fit(x, y, sample_weight=weight)


def test_unfitted_and_wrong_width():
    x, y = friedman1(100)
    with pytest.raises(NotFittedError):
        MARS().predict(x)
    model = MARS(max_terms=5).fit(x, y)
    with pytest.raises(ValueError, match="X has 3 features, but MARS is expecting 10"):
        model.predict(x[:, :3])
    with pytest.raises(ValueError, match="NaN or inf"):
        model.predict(np.full((2, 10), np.nan))


def test_x64_is_scoped():
    x, y = friedman1(100)
    MARS(max_terms=5).fit(x, y)
    assert jnp.zeros(1).dtype == jnp.float32
