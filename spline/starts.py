"""Starting parameters of the study's MLP: from a MARS fit, or random (He, Glorot).

MARS starts (``MARS_STARTS``): fit MARS on the training rows (one-hot targets for classification),
convert it exactly (``spline.convert.to_dense``; degree 2 through the min-surrogate), fill the
hidden width the fit does not need, and, for classification, refit the output layer by
multinomial logistic regression on the hidden features. Spare width (``SPARE_FILLS``):

- ``"pruned"``: the terms the backward pass pruned, then random units;
- ``"grow"``: the hinges of a second forward pass, ``thresh = 0`` and ``max_terms`` = the hidden
  width + 1, that the model does not use, then random units. The network still computes the
  configured fit: the grown fit's own selected model has many near-collinear hinge pairs with
  large, cancelling coefficients (up to 500 on Friedman #1) and trains unstably;
- ``"random"``: random units only.

Random units get He-normal incoming weights times a scale and zero outgoing weights.
``"mars_grow"`` and ``"mars_pruned"`` draw them at ``config.mars.spare_scale``; ``"mars_he_spare"``
is the earlier default (random units only, at the full He scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from spline.basis import Term
from spline.convert import min_widths, spare_terms_of, to_dense
from spline.data import Data
from spline.init import MLP
from spline.mars import MARS
from spline.preprocess import Prepared

SPARE_FILLS = ("pruned", "grow", "random")


@dataclasses.dataclass(frozen=True)
class SpareWidth:
    """How a MARS start fills the hidden width the fit does not need.

    Attributes:
      fill: one of ``SPARE_FILLS``.
      random_scale: factor on the He-normal std of the random units; None takes
        ``config.mars.spare_scale``.

    """

    fill: str
    random_scale: float | None = None


# init name -> spare-width rule. "mars_he_spare" is the conversion's earlier default (random units
# at the full He scale), kept to compare against.
MARS_STARTS: dict[str, SpareWidth] = {
    "mars_grow": SpareWidth(fill="grow"),
    "mars_pruned": SpareWidth(fill="pruned"),
    "mars_he_spare": SpareWidth(fill="random", random_scale=1.0),
}
RANDOM_INITS: dict[str, Callable] = {
    "he": nn.initializers.he_normal(),
    "glorot": nn.initializers.glorot_uniform(),
}
INITS = (*MARS_STARTS, *RANDOM_INITS)


def check_init(name: str) -> None:
    """Raise ValueError naming ``name`` and the choices if it is not a registered init."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; choose from {INITS}")


def spare_width(name: str, mars_cfg: ml_collections.ConfigDict) -> tuple[str, float]:
    """``(fill, random_scale)`` of MARS start ``name`` under ``mars_cfg``."""
    rule = MARS_STARTS[name]
    scale = mars_cfg.spare_scale if rule.random_scale is None else rule.random_scale
    return rule.fill, float(scale)


def mars_target(data: Data, prep: Prepared) -> np.ndarray:
    """What MARS fits: one-hot labels [N, classes], or the standardized target [N, 1] (float64)."""
    if data.classification:
        return np.eye(data.num_classes)[data.y_train]
    return prep.t_train.astype(np.float64)


def fit_mars(mars_cfg: ml_collections.ConfigDict, x: np.ndarray, target: np.ndarray) -> MARS:
    """Fit the model a MARS start converts (``mars_cfg``: ``max_terms``, ``degree``, ``thresh``).

    Args:
      x: [N, d] training inputs (raw units; the standardization is folded in at conversion).
      target: [N, K] from ``mars_target``.

    """
    return MARS(max_terms=mars_cfg.max_terms, degree=mars_cfg.degree, thresh=mars_cfg.thresh).fit(
        x, target
    )


def fit_spare_source(
    mars_cfg: ml_collections.ConfigDict, x: np.ndarray, target: np.ndarray, widths: Sequence[int]
) -> MARS:
    """The ``"grow"`` fill's fit: ``thresh = 0``, ``max_terms = min(widths) + 1`` (one hinge per
    unit of the narrowest hidden layer), whose forward terms supply spare hinges.
    """
    return MARS(max_terms=min(widths) + 1, degree=mars_cfg.degree, thresh=0.0).fit(x, target)


def spare_terms(
    model: MARS, widths: Sequence[int], fill: str, spare_source: MARS | None = None
) -> list[Term]:
    """The hinges a MARS start puts in the spare width (none for ``"random"`` or degree 2).

    Raises:
      ValueError: ``fill="grow"`` without ``spare_source``.

    """
    if fill == "grow" and spare_source is None:
        raise ValueError("fill='grow' needs spare_source=fit_spare_source(...)")
    if fill == "random" or model.max_degree_ > 1:
        return []
    budget = min(widths) - min_widths(model)[0]
    return spare_terms_of(model, budget, spare_source if fill == "grow" else None)


def mars_params(
    model: MARS,
    data: Data,
    prep: Prepared,
    *,
    widths: Sequence[int],
    key: jax.Array,
    fill: str,
    random_scale: float,
    balance: bool,
    logistic_c: float,
    spare_source: MARS | None = None,
) -> dict:
    """Convert a fitted model into the MLP's parameters (classification: refit the output layer).

    Args:
      model: from ``fit_mars``.
      data, prep: the splits and their standardization (folded into the first layer).
      widths: hidden widths.
      key: draws the random units.
      fill, random_scale: the spare-width rule (``spare_width``).
      spare_source: for ``fill="grow"``, the fit from ``fit_spare_source``.
      balance: equalize the converted units' incoming and outgoing norms.
      logistic_c: inverse L2 strength of the logistic refit (classification).

    Returns:
      ``{"Dense_0": ..., "Dense_L": ...}`` float32.

    Raises:
      ValueError: when the fit needs more hidden units or layers than ``widths`` has, or
        ``fill="grow"`` comes without ``spare_source``.

    """
    widths = list(widths)
    # Degree 2 is not CPWL: the documented min-surrogate, refit on the training inputs.
    surrogate = "min" if model.max_degree_ > 1 else None
    need = min_widths(model, surrogate)
    if len(need) > len(widths) or any(n > w for n, w in zip(need, widths, strict=False)):
        raise ValueError(f"MARS needs hidden widths >= {need}, config.model.widths is {widths}")
    spare = spare_terms(model, widths, fill, spare_source)
    params = to_dense(
        model,
        input_mean=prep.x_mean,
        input_std=prep.x_std,
        balance=balance,
        widths=widths,
        key=key,
        surrogate=surrogate,
        x=data.x_train if surrogate else None,
        spare_terms=spare,
        random_scale=random_scale,
    )
    if data.classification:
        params = refit_output_logistic(params, prep.z_train, prep.t_train, logistic_c)
    return params


def refit_output_logistic(params: dict, z: np.ndarray, labels: np.ndarray, c: float) -> dict:
    """Replace the last layer by a multinomial logistic regression on the last hidden features.

    Args:
      params: MLP parameters (``Dense_0`` ... ``Dense_L``).
      z: [N, d] network inputs.
      labels: [N] int classes.
      c: inverse L2 strength of scikit-learn's ``LogisticRegression``.

    Returns:
      Parameters with ``Dense_L`` replaced.

    """
    from sklearn.linear_model import LogisticRegression

    n = len(params)
    feats = [params[f"Dense_{i}"]["bias"].shape[0] for i in range(n)]
    hidden_params = {f"Dense_{i}": params[f"Dense_{i}"] for i in range(n - 1)}
    # Full precision whatever the backend (a GPU's TF32 default would move the features).
    with jax.default_matmul_precision("highest"):
        hidden = MLP(features=feats[:-1]).apply({"params": hidden_params}, jnp.asarray(z))
    # MLP without its output layer ends in a Dense; the hidden features are its ReLU.
    h = np.maximum(np.asarray(hidden, np.float64), 0.0)
    clf = LogisticRegression(C=c, max_iter=2000).fit(h, labels)
    out = dict(params)
    out[f"Dense_{n - 1}"] = {
        "kernel": jnp.asarray(clf.coef_.T, jnp.float32),
        "bias": jnp.asarray(clf.intercept_, jnp.float32),
    }
    return out


def random_params(name: str, features: Sequence[int], d: int, key: jax.Array) -> dict:
    """He or Glorot kernels, zero biases, for ``MLP(features)`` on ``d`` inputs."""
    init = RANDOM_INITS[name]
    mlp = MLP(features=tuple(features), kernel_inits=(init,) * len(features))
    return mlp.init(key, jnp.zeros((1, d), jnp.float32))["params"]
