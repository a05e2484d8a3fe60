"""Parity with R's earth 5.3.2: the same terms, knots, selected subset, coefficients and GCV.

Runs earth through ``Rscript`` (``spline.earth_r``). Without R's earth these tests skip, unless
``FASTDFKD_REQUIRE_EARTH=1`` (set by CI, which installs ``r-cran-earth``) makes them fail.
"""

import os
import warnings
import zlib

import numpy as np
import pytest
from sklearn.datasets import make_friedman1

from spline import MARS, earth_r

REQUIRE = os.environ.get("FASTDFKD_REQUIRE_EARTH") == "1"
if not earth_r.available():
    if REQUIRE:
        raise RuntimeError("FASTDFKD_REQUIRE_EARTH=1 but Rscript with earth is not available")
    pytest.skip(
        "Rscript with R's earth package is not installed (apt-get install r-cran-earth)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.earth
GCV_RTOL = 1e-6
FRIEDMAN_VARS = 5  # make_friedman1's y uses the first five predictors
COEF_RTOL = 1e-6


def make_data(n, p, seed, k=1, binary=None, constant=None, ties=False):
    """Friedman #1 (sklearn's make_friedman1, at least 5 predictors, the first p kept), with
    more outputs from x0-x2, a binary or constant predictor, or values rounded to eighths."""
    x, y = make_friedman1(n, max(p, FRIEDMAN_VARS), noise=1.0, random_state=seed)
    rng = np.random.default_rng(seed)
    if k > 1:
        extra = [
            np.cos(3 * x[:, 0]) * (i + 1) + x[:, 1] * x[:, 2] + 0.5 * rng.normal(size=n)
            for i in range(k - 1)
        ]
        y = np.stack([y] + extra, 1)
    x = x[:, :p]
    if binary is not None:
        x[:, binary] = rng.integers(0, 2, n)
    if constant is not None:
        x[:, constant] = 0.25
    if ties:
        x = np.round(x * 8) / 8
    return x, y


# (id, n, p, earth arguments, data options, weighted)
CASES = [
    ("n100-p1-defaults", 100, 1, {}, {}, False),
    ("n100-p5-deg2", 100, 5, {"degree": 2}, {}, False),
    ("n100-p2-nk101-grsq-stop", 100, 2, {"nk": 101}, {}, False),
    ("n442-p10-defaults", 442, 10, {}, {}, False),
    ("n442-p10-deg2-thresh0", 442, 10, {"degree": 2, "nk": 21, "thresh": 0.0}, {}, False),
    (
        "n442-p3-spans-given",
        442,
        3,
        {"nk": 11, "thresh": 0.01, "minspan": 3, "endspan": 5},
        {},
        False,
    ),
    ("n442-p20-defaults", 442, 20, {}, {}, False),
    ("n442-p8-deg2-knots-count", 442, 8, {"degree": 2, "nk": 31, "minspan": -5}, {}, False),
    ("n442-p10-penalty3", 442, 10, {"nk": 21, "penalty": 3.0, "thresh": 0.0}, {}, False),
    ("n1000-p10-binary", 1000, 10, {"nk": 21}, {"binary": 2}, False),
    ("n1000-p6-constant", 1000, 6, {"nk": 21}, {"constant": 5}, False),
    ("n1000-p4-two-outputs", 1000, 4, {"nk": 15}, {"k": 2}, False),
    ("n1000-p5-deg2-three-outputs", 1000, 5, {"degree": 2, "nk": 21}, {"k": 3}, False),
    ("n1000-p7-weights", 1000, 7, {"nk": 21}, {}, True),
    ("n300-p4-deg2-weights", 300, 4, {"degree": 2, "nk": 15}, {}, True),
    ("n300-p3-weights-two-outputs", 300, 3, {"nk": 11}, {"k": 2}, True),
    ("n1e4-p10-defaults", 10_000, 10, {}, {}, False),
    ("n1e4-p10-deg2", 10_000, 10, {"degree": 2, "nk": 21}, {}, False),
    ("n1e4-p20-thresh0", 10_000, 20, {"thresh": 0.0}, {}, False),
    (
        "n1e4-p5-minspan1-endspan1",
        10_000,
        5,
        {"nk": 51, "thresh": 0.0, "minspan": 1, "endspan": 1},
        {},
        False,
    ),
    ("n1e4-p12-deg2-fastk5", 10_000, 12, {"degree": 2, "nk": 31, "fast_k": 5}, {}, False),
    ("n1e4-p3-ties", 10_000, 3, {"nk": 21, "degree": 2}, {"ties": True}, False),
    pytest.param("n1e5-p10-defaults", 100_000, 10, {}, {}, False, marks=pytest.mark.slow),
    pytest.param(
        "n1e5-p10-deg2", 100_000, 10, {"degree": 2, "nk": 21}, {}, False, marks=pytest.mark.slow
    ),
]


def ours(kw):
    """MARS arguments for earth's."""
    names = {
        "nk": "max_terms",
        "degree": "degree",
        "thresh": "thresh",
        "penalty": "penalty",
        "minspan": "minspan",
        "endspan": "endspan",
        "fast_k": "fast_k",
    }
    return {names[key]: value for key, value in kw.items()}


@pytest.mark.parametrize("case_id, n, p, kw, opts, weighted", CASES)
def test_same_model_as_earth(case_id, n, p, kw, opts, weighted):
    x, y = make_data(n, p, seed=zlib.crc32(case_id.encode()) % 1000, **opts)
    w = np.random.default_rng(1).uniform(0.2, 2.0, n) if weighted else None
    ref = earth_r.fit(x, y, w, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant columns
        model = MARS(**ours(kw)).fit(x, y, sample_weight=w)
    earth_keys = earth_r.earth_term_keys(ref)
    our_fwd = [earth_r.term_key(t) for t in model.forward_terms_]
    assert sorted(map(sorted, our_fwd)) == sorted(map(sorted, earth_keys)), "forward terms"
    earth_sel = [earth_keys[i] for i in ref.selected]
    our_sel = [earth_r.term_key(t) for t in model.terms_]
    assert sorted(map(sorted, our_sel)) == sorted(map(sorted, earth_sel)), "selected terms"
    assert model.gcv_ == pytest.approx(ref.gcv, rel=GCV_RTOL)
    assert model.rsq_ == pytest.approx(ref.rsq, rel=GCV_RTOL)
    assert model.termination_ == ref.termcond
    coef = model.coef_matrix_
    theirs = dict(zip(earth_sel, ref.coef, strict=True))
    for key, row in zip(our_sel, coef, strict=True):
        np.testing.assert_allclose(
            row, theirs[key], rtol=COEF_RTOL, atol=COEF_RTOL * np.abs(ref.coef).max()
        )
