"""A trained classifier cut into its body and a replaceable head, and the heads fit on features.

A classifier of the zoo with a `features_only` switch (`fastdfkd_jax.models`) ends in one Dense
layer on pooled features `[N, D]`; `split_classifier` finds that layer and returns the body (the
same module with `features_only=True`, whose parameters keep their names). `HeadedClassifier`
puts any head (a `spline.MLP`: a Dense, or a ReLU MLP) on that body. Heads fit by regression on
features `[N, D]` against targets `[N, K]` (the teacher's logits):

- `linear_fit`: least squares with an intercept (float64);
- `mars_fit` + `mars_head_params`: MARS (degree 1, multi-output) converted exactly into a
  one-hidden-layer ReLU MLP by `spline.to_dense`; input columns MARS cannot use (constant on the
  fit rows) get zero weights, so the head reads all `D` features and still equals the fit;
- `linear_mars_params`: the linear refit plus MARS fit on its residual, one ReLU MLP;
- `random_features_params`: the same MLP shape with random hidden units and a least-squares
  readout, the control that separates the hinges MARS chose from the extra capacity.

Head parameters follow `spline.MLP`'s layout, `{'Dense_0': {'kernel', 'bias'}, ...}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import spline

# The module field that makes a classifier return its pooled features instead of logits.
FEATURES_FIELD = "features_only"


class HeadedClassifier(nn.Module):
    """A classifier's body followed by `head`: normalized images `[N, H, W, C]` -> `[N, K]`.

    Variables are `{'params': {'body': ..., 'head': ...}, 'batch_stats': {'body': ...}}`; inside
    `body` the names are the original classifier's (minus its head).

    Attributes:
      body: a classifier with `features_only=True` (from `split_classifier`).
      head: maps features `[N, D]` to logits `[N, K]` (a `spline.MLP`).
      freeze_body: run the body in eval mode (running BN statistics, none updated) and stop its
        gradient, whatever `train` says: only the head learns.

    """

    body: nn.Module
    head: nn.Module
    freeze_body: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        features = self.body(x, train=train and not self.freeze_body)
        if self.freeze_body:
            features = jax.lax.stop_gradient(features)
        return self.head(features)


@dataclasses.dataclass(frozen=True)
class Split:
    """A classifier cut before its last Dense layer.

    Attributes:
      body: the classifier with `features_only=True`: images -> features `[N, num_features]`.
      head_name: the name of the classifier's last Dense layer in its `params`.
      num_features: D, the head's input width.
      num_classes: K, the head's output width.

    """

    body: nn.Module
    head_name: str
    num_features: int
    num_classes: int


def split_classifier(model: nn.Module, image_shape: Sequence[int]) -> Split:
    """Finds `model`'s Dense head by comparing its parameters with and without `features_only`.

    Args:
      model: a classifier of the zoo.
      image_shape: (H, W, C) of its inputs.

    Raises:
      ValueError: naming the model when it has no `features_only` switch, or when its head is
        not one Dense layer `{'kernel': [D, K], 'bias': [K]}` on the features `[N, D]`.

    """
    name = type(model).__name__
    if FEATURES_FIELD not in {f.name for f in dataclasses.fields(model)}:
        raise ValueError(
            f"{name} has no {FEATURES_FIELD!r} field: it does not expose penultimate features, so "
            "its head cannot be replaced (classifiers of fastdfkd_jax.models ending in global "
            "pooling and one Dense layer have it)."
        )
    body = model.clone(**{FEATURES_FIELD: True})
    x = jnp.zeros((1, *image_shape), jnp.float32)
    full = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))["params"]
    feats, body_params = jax.eval_shape(
        lambda: body.init_with_output(jax.random.PRNGKey(0), x, train=False)
    )
    extra = sorted(set(full) - set(body_params["params"]))
    head = full[extra[0]] if len(extra) == 1 else None
    kernel = head.get("kernel") if isinstance(head, dict) else None
    if (
        kernel is None
        or set(head) != {"kernel", "bias"}
        or feats.ndim != 2
        or kernel.shape[0] != feats.shape[1]
    ):
        raise ValueError(
            f"{name}'s head is not one Dense layer on pooled features: with {FEATURES_FIELD} it "
            f"outputs {feats.shape} and drops the parameters {extra}."
        )
    return Split(
        body=body, head_name=extra[0], num_features=kernel.shape[0], num_classes=kernel.shape[1]
    )


def body_variables(variables: dict, split: Split) -> dict:
    """The body's `{'params', 'batch_stats'}`: the classifier's without its head."""
    params = {k: v for k, v in variables["params"].items() if k != split.head_name}
    return {"params": params, "batch_stats": variables.get("batch_stats", {})}


def plain_head_params(variables: dict, split: Split) -> dict:
    """The classifier's own Dense head as `spline.MLP` parameters `{'Dense_0': ...}`."""
    head = variables["params"][split.head_name]
    return {"Dense_0": {"kernel": jnp.asarray(head["kernel"]), "bias": jnp.asarray(head["bias"])}}


def head_module(head_params: dict) -> spline.MLP:
    """The `spline.MLP` whose layer widths are those of `head_params`."""
    widths = tuple(int(head_params[f"Dense_{i}"]["bias"].shape[0]) for i in range(len(head_params)))
    return spline.MLP(features=widths)


def headed(
    split: Split, body_vars: dict, head_params: dict, *, freeze_body: bool = False
) -> tuple[HeadedClassifier, dict]:
    """The body with the head of `head_params`: `(module, variables)`."""
    model = HeadedClassifier(
        body=split.body, head=head_module(head_params), freeze_body=freeze_body
    )
    variables = {
        "params": {"body": body_vars["params"], "head": head_params},
        "batch_stats": {"body": body_vars["batch_stats"]},
    }
    return model, variables


def head_size(head_params: dict) -> int:
    """Number of scalars in a head's parameters."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(head_params)))


def _check_fit_data(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [N, D] and targets [N, K]; got {x.shape}, {y.shape}.")
    if len(x) == 0:
        raise ValueError("No rows to fit a head on (features has shape {x.shape}).")
    return x, y


def linear_fit(features: np.ndarray, targets: np.ndarray) -> dict:
    """Least-squares Dense head `[N, D] -> [N, K]` with an intercept, as `{'Dense_0': ...}`."""
    x, y = _check_fit_data(features, targets)
    design = np.concatenate([x, np.ones((len(x), 1))], 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {
        "Dense_0": {
            "kernel": jnp.asarray(coef[:-1], jnp.float32),
            "bias": jnp.asarray(coef[-1], jnp.float32),
        }
    }


def varying_columns(features: np.ndarray) -> np.ndarray:
    """Indices of the columns of `features` [N, D] that are not constant (MARS needs a range)."""
    return np.flatnonzero(np.ptp(np.asarray(features), axis=0) > 0)


def mars_fit(
    features: np.ndarray, targets: np.ndarray, *, max_terms: int | None, thresh: float
) -> tuple[spline.MARS, np.ndarray]:
    """Degree-1 multi-output MARS of `targets` [N, K] on the varying columns of `features` [N, D].

    Returns:
      `(model, columns)`: the fit, and the feature columns it was fit on (its inputs).

    Raises:
      ValueError: no rows, no varying column, or a fit with only the intercept (no hidden unit).

    """
    x, y = _check_fit_data(features, targets)
    columns = varying_columns(x)
    if columns.size == 0:
        raise ValueError(
            f"Every feature column is constant over the {len(x)} rows: nothing to fit."
        )
    model = spline.MARS(max_terms=max_terms, degree=1, thresh=thresh).fit(x[:, columns], y)
    if len(model.terms_) < 2:
        raise ValueError(
            f"The MARS fit (max_terms={max_terms}, thresh={thresh}) kept only the intercept: a "
            "head needs at least one hinge."
        )
    return model, columns


def mars_head_params(
    model: spline.MARS, columns: np.ndarray, num_features: int, *, balance: bool = True
) -> dict:
    """The exact ReLU-MLP form of a degree-1 `mars_fit`, reading all `num_features` features.

    `balance` rescales each hidden unit so its incoming and outgoing weight norms are equal
    (`spline.to_dense`'s option; the function is unchanged). Without it a hinge with a large
    coefficient (earth keeps some above 1e3 on pool features, hinges active on a few rows) sits
    in the output layer alone, and SGD's first steps on the head diverge.

    Returns:
      `{'Dense_0': {'kernel': [D, H], 'bias': [H]}, 'Dense_1': {'kernel': [H, K], 'bias': [K]}}`:
      `head(f) == model.predict(f[:, columns])` for every `f` (zero weights on other columns).

    """
    params = spline.to_dense(model, balance=balance)
    kernel = np.asarray(params["Dense_0"]["kernel"])
    full = np.zeros((num_features, kernel.shape[1]), kernel.dtype)
    full[np.asarray(columns)] = kernel
    return {
        "Dense_0": {"kernel": jnp.asarray(full), "bias": params["Dense_0"]["bias"]},
        "Dense_1": params["Dense_1"],
    }


def linear_mars_params(linear: dict, mars_params: dict) -> dict:
    """A linear head and a MARS head (fit on its residual) summed into one ReLU MLP, exactly.

    The linear part takes two units per feature, `x = relu(x) - relu(-x)`, so it holds for
    features of any sign; the MARS head's units follow.

    Args:
      linear: `{'Dense_0': {'kernel': [D, K], 'bias': [K]}}` (`linear_fit`).
      mars_params: `mars_head_params` of a fit on the residual `targets - linear(features)`.

    Returns:
      `{'Dense_0': [D, 2 D + H], 'Dense_1': [2 D + H, K]}` computing `linear(f) + mars(f)`.

    """
    w = np.asarray(linear["Dense_0"]["kernel"], np.float32)
    d = w.shape[0]
    eye = np.eye(d, dtype=np.float32)
    hidden, out = mars_params["Dense_0"], mars_params["Dense_1"]
    return {
        "Dense_0": {
            "kernel": jnp.concatenate([eye, -eye, jnp.asarray(hidden["kernel"])], 1),
            "bias": jnp.concatenate([jnp.zeros((2 * d,), jnp.float32), hidden["bias"]]),
        },
        "Dense_1": {
            "kernel": jnp.concatenate([w, -w, jnp.asarray(out["kernel"])], 0),
            "bias": jnp.asarray(linear["Dense_0"]["bias"]) + out["bias"],
        },
    }


def random_features_params(
    key: jax.Array, features: np.ndarray, targets: np.ndarray, width: int
) -> dict:
    """A ReLU MLP head `D -> width -> K` with random hidden units and a least-squares readout.

    The hidden kernel is He-normal with zero biases; the output layer is `linear_fit` of the
    targets on the hidden activations. Same shape and same readout fit as the MARS head, only the
    hidden units differ (random instead of the hinges MARS chose).

    Args:
      key: draws the hidden kernel.
      features: [N, D] fit rows.
      targets: [N, K].
      width: hidden units.

    """
    x, y = _check_fit_data(features, targets)
    if width < 1:
        raise ValueError(f"The random head's width must be >= 1, got {width}.")
    kernel = nn.initializers.he_normal()(key, (x.shape[1], width), jnp.float32)
    hidden = np.maximum(x @ np.asarray(kernel, np.float64), 0.0)
    return {
        "Dense_0": {"kernel": kernel, "bias": jnp.zeros((width,), jnp.float32)},
        "Dense_1": linear_fit(hidden, y)["Dense_0"],
    }
