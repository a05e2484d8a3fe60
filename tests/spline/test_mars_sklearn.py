"""scikit-learn conformance of ``spline.MARS``: the estimator checks, Pipeline, GridSearchCV."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from spline import MARS

# Earth's case weights are not frequency weights: a row's weight scales its residual, but the
# knot grid, minspan and endspan count rows. Doubling a row's weight is therefore not the same
# fit as repeating the row, which is what this check asks.
EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": "earth's weights scale residuals; its knot grid counts rows, not weights",
}


@parametrize_with_checks([MARS(max_terms=11)], expected_failed_checks=lambda e: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 4)) * [1.0, 10.0, 100.0, 0.1]
    y = np.abs(x[:, 0] - 0.5) + 0.1 * x[:, 1] + rng.normal(scale=0.05, size=n)
    return x, y


def test_pipeline_predicts_like_the_bare_model_on_scaled_inputs():
    x, y = _data()
    pipe = make_pipeline(StandardScaler(), MARS(max_terms=11)).fit(x, y)
    scaled = StandardScaler().fit_transform(x)
    bare = MARS(max_terms=11).fit(scaled, y)
    np.testing.assert_allclose(pipe.predict(x), bare.predict(scaled), rtol=1e-10, atol=1e-10)


def test_grid_search_picks_a_parameter_and_refits():
    x, y = _data(300)
    search = GridSearchCV(MARS(max_terms=11), {"degree": [1, 2], "thresh": [0.001, 0.1]}, cv=3)
    search.fit(x, y)
    assert set(search.best_params_) == {"degree", "thresh"}
    assert search.best_estimator_.n_features_in_ == 4
    assert search.score(x, y) > 0.8


@pytest.mark.parametrize("weights", [None, "ones"])
def test_clone_and_pickle_round_trip(weights):
    import pickle

    from sklearn.base import clone

    x, y = _data()
    w = None if weights is None else np.ones(len(y))
    model = MARS(max_terms=11, degree=2).fit(x, y, sample_weight=w)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    fresh = clone(model)
    assert fresh.get_params() == model.get_params() and not hasattr(fresh, "terms_")
