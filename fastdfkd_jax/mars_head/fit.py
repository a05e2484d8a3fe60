"""The compared heads, fit on pool features `[N, D]` against the teacher's logits `[N, K]`.

`HEADS` is the registry (name -> builder); `fit_heads` builds the requested ones in a fixed order
(a head may reuse another's fit: 'linear_mars' the linear refit, 'random_features' the MARS head's
width) and reports for each its fit statistics.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from fastdfkd_jax.mars_head import heads


@dataclasses.dataclass(frozen=True)
class FitInputs:
    """What every head is built from.

    Attributes:
      features: [N, D] the student's pooled features of the pool images (eval mode, float64).
      targets: [N, K] the teacher's logits of the same images.
      plain: the student's own head (`heads.plain_head_params`).
      max_terms: MARS `max_terms` (None: earth's default).
      thresh: MARS forward-pass threshold.
      key: draws the random head's hidden units.

    """

    features: np.ndarray
    targets: np.ndarray
    plain: dict
    max_terms: int | None
    thresh: float
    key: jax.Array


def _plain(inputs: FitInputs, built: dict) -> tuple[dict, dict]:
    return inputs.plain, {}


def _linear(inputs: FitInputs, built: dict) -> tuple[dict, dict]:
    return heads.linear_fit(inputs.features, inputs.targets), {}


def _mars(inputs: FitInputs, built: dict) -> tuple[dict, dict]:
    model, columns = heads.mars_fit(
        inputs.features, inputs.targets, max_terms=inputs.max_terms, thresh=inputs.thresh
    )
    params = heads.mars_head_params(model, columns, inputs.features.shape[1])
    return params, _mars_stats(model, columns)


def _mars_stats(model, columns: np.ndarray) -> dict:
    used = sorted({int(columns[v]) for t in model.terms_ for v in t.variables()})
    return dict(mars_terms=len(model.terms_), mars_features_used=len(used))


def _linear_mars(inputs: FitInputs, built: dict) -> tuple[dict, dict]:
    linear = built["linear"][0] if "linear" in built else _linear(inputs, built)[0]
    residual = inputs.targets - _predict(linear, inputs.features)
    model, columns = heads.mars_fit(
        inputs.features, residual, max_terms=inputs.max_terms, thresh=inputs.thresh
    )
    mars = heads.mars_head_params(model, columns, inputs.features.shape[1])
    return heads.linear_mars_params(linear, mars), _mars_stats(model, columns)


def _random_features(inputs: FitInputs, built: dict) -> tuple[dict, dict]:
    mars = built["mars"][0] if "mars" in built else _mars(inputs, built)[0]
    width = int(mars["Dense_0"]["bias"].shape[0])
    return heads.random_features_params(inputs.key, inputs.features, inputs.targets, width), {}


# name -> builder(inputs, heads built so far) -> (params, stats). Order matters: a builder may
# read an earlier head (and fits it itself when that head was not asked for).
HEADS: dict[str, Callable[[FitInputs, dict], tuple[dict, dict]]] = {
    "plain": _plain,
    "linear": _linear,
    "mars": _mars,
    "linear_mars": _linear_mars,
    "random_features": _random_features,
}


def _predict(params: dict, features: np.ndarray) -> np.ndarray:
    """A head's output in float64 numpy: [N, D] -> [N, K]."""
    x = np.asarray(features, np.float64)
    n = len(params)
    for i in range(n):
        layer = params[f"Dense_{i}"]
        x = x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < n - 1:
            x = np.maximum(x, 0.0)
    return x


def fit_heads(names: Sequence[str], inputs: FitInputs) -> dict[str, tuple[dict, dict]]:
    """Builds the heads `names` (keys of `HEADS`): name -> (params, stats).

    Stats: `fit_seconds`, `pool_rsq` (R^2 of the head's output against the teacher's logits on
    the fit rows, pooled over classes), `pool_agreement` (argmax equal to the teacher's),
    `hidden_units` (0 for a Dense head), `parameters`, `nonzero_parameters`, and for MARS heads
    `mars_terms` (intercept included) and `mars_features_used`.

    Raises:
      ValueError: an unknown head name, naming it and the choices.

    """
    unknown = [n for n in names if n not in HEADS]
    if unknown:
        raise ValueError(f"Unknown heads {unknown}; choose from {list(HEADS)}.")
    built: dict[str, tuple[dict, dict]] = {}
    tss = float(np.sum((inputs.targets - inputs.targets.mean(0)) ** 2))
    for name in HEADS:
        if name not in names:
            continue
        start = time.perf_counter()
        params, stats = HEADS[name](inputs, built)
        seconds = time.perf_counter() - start
        out = _predict(params, inputs.features)
        leaves = jax.tree.leaves(params)
        built[name] = (
            params,
            dict(
                fit_seconds=seconds,
                pool_rsq=1.0 - float(np.sum((inputs.targets - out) ** 2)) / tss,
                pool_agreement=float(np.mean(out.argmax(1) == inputs.targets.argmax(1))),
                hidden_units=int(params["Dense_0"]["bias"].shape[0]) if len(params) > 1 else 0,
                parameters=heads.head_size(params),
                nonzero_parameters=int(sum(np.count_nonzero(np.asarray(p)) for p in leaves)),
                **stats,
            ),
        )
    return {name: built[name] for name in names}
