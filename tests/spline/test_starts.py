"""MARS starts (spare width, logistic refit) and random starts of the study's MLP."""

import jax
import numpy as np
import pytest

from spline import data as data_lib
from spline import preprocess, starts
from spline.convert import min_widths, unit_count
from tests.spline.conftest import load_config, mlp_float64

WIDTHS = (32, 32)


@pytest.fixture(scope="module")
def diabetes():
    config = load_config("spline_diabetes")
    config.mars.max_terms = 15
    data = data_lib.load_data(config.dataset)
    prep = preprocess.prepare(data)
    return config, data, prep


def _start(config, data, prep, name, key=0):
    fill, scale = starts.spare_width(name, config.mars)
    target = starts.mars_target(data, prep)
    model = starts.fit_mars(config.mars, data.x_train, target)
    grown = None
    if fill == "grow":
        grown = starts.fit_spare_source(config.mars, data.x_train, target, WIDTHS)
    params = starts.mars_params(
        model,
        data,
        prep,
        widths=WIDTHS,
        key=jax.random.key(key),
        fill=fill,
        random_scale=scale,
        balance=True,
        logistic_c=1.0,
        spare_source=grown,
    )
    return model, params, grown


@pytest.mark.parametrize("name", ["mars_grow", "mars_pruned", "mars_he_spare"])
def test_mars_starts_compute_the_fit(diabetes, name):
    config, data, prep = diabetes
    model, params, _ = _start(config, data, prep, name)
    got = mlp_float64(params, prep.z_val)[:, 0]
    np.testing.assert_allclose(got, model.predict(data.x_val)[:, 0], atol=1e-4)
    assert [params[f"Dense_{i}"]["bias"].shape[0] for i in range(2)] == list(WIDTHS)


def test_grow_fills_the_width_from_a_thresh0_fit(diabetes):
    config, data, prep = diabetes
    model, params, grown = _start(config, data, prep, "mars_grow")
    # thresh 0 and max_terms = width + 1: a longer forward pass than the configured fit's.
    assert len(model.forward_terms_) <= config.mars.max_terms
    assert len(model.forward_terms_) < len(grown.forward_terms_) <= WIDTHS[0] + 1
    need = min_widths(model)[0]
    spare = starts.spare_terms(model, WIDTHS, "grow", grown)
    n_spare = sum(unit_count(t) for t in spare)
    # More hinges than the configured fit's own pruned terms give.
    assert n_spare > sum(unit_count(t) for t in starts.spare_terms(model, WIDTHS, "pruned"))
    w1 = np.asarray(params["Dense_0"]["kernel"])
    # Spare units read one input each (the term's variable), random units read all.
    variables = [t.variable for t in spare for _ in range(unit_count(t))]
    for col, variable in zip(range(need, need + n_spare), variables, strict=True):
        assert np.flatnonzero(w1[:, col]).tolist() == [variable]
    assert np.all(w1[:, need + n_spare :] != 0)
    # No spare hinge repeats one of the model's own terms.
    own = {(t.variable, t.knot, t.direction) for t in model.terms_[1:]}
    assert not own & {(t.variable, t.knot, t.direction) for t in spare}
    with pytest.raises(ValueError, match="spare_source"):
        starts.spare_terms(model, WIDTHS, "grow")


def test_random_units_scale(diabetes):
    config, data, prep = diabetes
    model, small, _ = _start(config, data, prep, "mars_pruned")
    _, full, _ = _start(config, data, prep, "mars_he_spare")
    need = min_widths(model)[0]
    n_spare = sum(unit_count(t) for t in starts.spare_terms(model, WIDTHS, "pruned"))
    w_small = np.asarray(small["Dense_0"]["kernel"])[:, need + n_spare + 2 :]
    w_full = np.asarray(full["Dense_0"]["kernel"])[:, need + 2 :]
    d = prep.z_train.shape[1]
    assert np.std(w_full) == pytest.approx(np.sqrt(2.0 / d), rel=0.2)
    assert np.std(w_small) == pytest.approx(config.mars.spare_scale * np.sqrt(2.0 / d), rel=0.2)


def test_digits_one_hot_fit_and_logistic_refit():
    config = load_config("spline_digits", "quick")
    data = data_lib.load_data(config.dataset)
    keep = np.isin(data.y_train, [0, 1, 2])  # three classes keep the fit small
    data = data_lib.Data(
        data.x_train[keep][:300],
        data.y_train[keep][:300],
        data.x_val,
        data.y_val,
        data.x_test,
        data.y_test,
        True,
        3,
    )
    cols = np.ptp(data.x_train, 0) > 0
    data.x_train, data.x_val, data.x_test = (
        a[:, cols] for a in (data.x_train, data.x_val, data.x_test)
    )
    prep = preprocess.prepare(data, "global")
    model, params, _ = _start(config, data, prep, "mars_pruned")
    assert model.n_outputs_ == 3
    logits = mlp_float64(params, prep.z_train)
    # The refit output layer classifies the training digits almost perfectly.
    assert np.mean(np.argmax(logits, 1) == data.y_train) > 0.95


def test_random_starts_and_names():
    p = starts.random_params("he", (64, 1), 10, jax.random.key(0))
    assert np.std(np.asarray(p["Dense_0"]["kernel"])) == pytest.approx(np.sqrt(2 / 10), rel=0.15)
    assert np.all(np.asarray(p["Dense_0"]["bias"]) == 0)
    with pytest.raises(ValueError, match="'lecun'"):
        starts.check_init("lecun")
