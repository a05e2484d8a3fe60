"""Convert a fitted MARS model into the parameters of a ReLU MLP (Mo et al., arXiv 2102.06554).

Degree 1 (exact, everywhere, not only on the training range): a degree-1 MARS model is the CPWL
function ``f(x) = c0 + sum_k c_k * max(0, s_k (x_j - t_k))``, so one hidden ReLU layer with
``W1[j_k, k] = s_k``, ``b1[k] = -s_k t_k``, ``W2[k] = c_k``, ``b2 = c0`` reproduces it. A linear
term ``c x_j`` takes two units, ``c relu(x_j - m) - c relu(m - x_j) + c m``.

Options (each keeps the function exactly):
- input standardization ``z = (x - mean) / std`` folded into the first layer;
- scale balancing: a unit's incoming weights and bias times ``a > 0`` and its outgoing weights
  divided by ``a``, with ``a`` making the incoming and outgoing norms equal;
- spare terms: hinges the model does not use (e.g. the terms its backward pass pruned) as extra
  first-layer units with unit incoming norm (in standardized inputs) and zero outgoing weights:
  they start as meaningful features and learn at once;
- widening: extra units with random (He-normal, optionally scaled down) incoming and zero outgoing
  weights;
- deepening: identity layers, exact because ``relu(I h) = h`` for ``h >= 0``.

Degree 2 (``surrogate="min"``): a product of two hinges is not CPWL. Each product ``f1 * f2`` is
replaced by ``min(f1, f2) = f1 - relu(f1 - f2)`` (two hidden layers: the factors, then the mins)
and the output weights are refit by least squares to the MARS predictions on given points. The
network then equals ``surrogate_predict`` exactly and approximates the MARS model.

Precision: every value is computed in numpy float64 and only cast to ``dtype`` at the end (jax
places the values, it does no arithmetic on them), so the parameters do not depend on the backend
or on ``jax.default_matmul_precision`` (a GPU's TF32 default included).

Parameters follow Flax's ``nn.Dense`` layout, ``{"Dense_i": {"kernel": [in, out], "bias":
[out]}}``, for ``spline.init.MLP``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spline.basis import LINEAR, Term
from spline.mars import MARS

SURROGATES = ("min",)


def _unit_rows(
    term: Term, mean: np.ndarray, std: np.ndarray, d: int
) -> list[tuple[np.ndarray, float, float, float]]:
    """First-layer units that express one factor (hinge or linear), in standardized inputs.

    Returns:
      list of ``(w [d], b, sign, offset)``: the factor equals ``sum(sign * relu(w . z + b)) +
      offset``.

    """
    j = term.variable
    if term.direction == LINEAR:
        # x_j = relu(x_j - m) - relu(m - x_j) + m with m the input mean: both units start active.
        w = np.zeros(d)
        w[j] = std[j]
        return [(w, 0.0, 1.0, mean[j]), (-w, 0.0, -1.0, 0.0)]
    s = float(term.direction)
    w = np.zeros(d)
    w[j] = s * std[j]
    return [(w, s * (mean[j] - term.knot), 1.0, 0.0)]


def unit_count(term: Term) -> int:
    """First-layer units of a degree-1 term in the exact conversion: 2 for linear, else 1."""
    return 2 if term.direction == LINEAR else 1


def _exact_layers(model: MARS, mean: np.ndarray, std: np.ndarray, spare: Sequence[Term] = ()):
    """One hidden layer reproducing a degree-1 model: ``[(W1, b1), (W2, b2)]`` float64.

    The units of ``spare`` follow the model's own units, scaled to unit incoming weight (in
    standardized inputs), with zero outgoing weights.
    """
    d = model.n_features_in_
    coef = model.coef_matrix_  # [n_terms, K]
    k = coef.shape[1]
    ws, bs, outs = [], [], []
    b2 = coef[0].copy()
    for term, c in zip(model.terms_[1:], coef[1:], strict=True):
        for w, b, sign, offset in _unit_rows(term, mean, std, d):
            ws.append(w)
            bs.append(b)
            outs.append(sign * c)
            b2 = b2 + offset * c
    for term in spare:
        # Any positive rescaling keeps the function (zero outgoing weight); unit weight in
        # standardized inputs puts spare hinges on the scale of the inputs, not of x's units.
        scale = 1.0 / std[term.variable]
        for w, b, _, _ in _unit_rows(term, mean, std, d):
            ws.append(w * scale)
            bs.append(b * scale)
            outs.append(np.zeros(k))
    w1 = np.stack(ws, 1) if ws else np.zeros((d, 0))
    w2 = np.stack(outs, 0) if outs else np.zeros((0, k))
    return [(w1, np.asarray(bs, dtype=np.float64)), (w2, b2)]


def _factor_units(factors: list[Term], mean, std, d):
    """Layer 1 of the surrogate: units of every distinct factor.

    Returns:
      ``(W1 [d, U], b1 [U], readout)``: ``readout[i]`` is ``(unit indices, signs, offset)`` giving
      factor i as ``sum(sign * h[unit]) + offset``.

    """
    ws, bs, readout = [], [], []
    for f in factors:
        idx, signs, off = [], [], 0.0
        for w, b, sign, offset in _unit_rows(f, mean, std, d):
            idx.append(len(ws))
            ws.append(w)
            bs.append(b)
            signs.append(sign)
            off += offset
        readout.append((idx, signs, off))
    return np.stack(ws, 1), np.asarray(bs), readout


def _factor_key(term: Term) -> tuple:
    return (term.variable, term.knot if term.direction != LINEAR else 0.0, term.direction)


def surrogate_basis(model: MARS, x: np.ndarray) -> np.ndarray:
    """Evaluate the surrogate basis at ``x`` [N, d] -> [N, n_terms] (products become mins)."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for term in model.terms_:
        factors = term.factors()
        if not factors:
            cols.append(np.ones(x.shape[0]))
        elif len(factors) == 1:
            cols.append(factors[0].factor_values(x))
        else:
            cols.append(np.minimum(factors[0].factor_values(x), factors[1].factor_values(x)))
    return np.stack(cols, 1)


def surrogate_coef(model: MARS, x: np.ndarray) -> np.ndarray:
    """Least-squares output weights of the surrogate basis fit to the model's predictions.

    Args:
      model: fitted MARS model.
      x: [N, d] points (typically the training inputs).

    Returns:
      [n_terms, K] coefficients.

    """
    basis = surrogate_basis(model, x)
    target = model.transform(x) @ model.coef_matrix_
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return coef


def surrogate_predict(model: MARS, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Predict with the CPWL surrogate: [N, K], ``coef`` from ``surrogate_coef``."""
    return surrogate_basis(model, x) @ coef


def _surrogate_layers(model: MARS, mean, std, coef: np.ndarray):
    """Two hidden layers computing the min-surrogate: ``[(W1, b1), (W2, b2), (W3, b3)]``."""
    d = model.n_features_in_
    keys, factors = {}, []
    for term in model.terms_[1:]:
        for f in term.factors():
            if _factor_key(f) not in keys:
                keys[_factor_key(f)] = len(factors)
                factors.append(f)
    w1, b1, readout = _factor_units(factors, mean, std, d)
    u = w1.shape[1]
    k = coef.shape[1]
    w2_cols, b2, w3_rows = [], [], []
    b3 = coef[0].copy()

    def linear_of(f: Term) -> tuple[np.ndarray, float]:
        idx, signs, off = readout[keys[_factor_key(f)]]
        w = np.zeros(u)
        w[idx] = signs
        return w, off

    for term, c in zip(model.terms_[1:], coef[1:], strict=True):
        fs = term.factors()
        w_a, off_a = linear_of(fs[0])
        # relu(f1) - relu(-f1) = f1 (f1 may be negative when linear).
        w2_cols += [w_a, -w_a]
        b2 += [off_a, -off_a]
        w3_rows += [c, -c]
        if len(fs) == 2:
            w_b, off_b = linear_of(fs[1])
            w2_cols.append(w_a - w_b)
            b2.append(off_a - off_b)
            w3_rows.append(-c)
    w2 = np.stack(w2_cols, 1)
    w3 = np.stack(w3_rows, 0) if w3_rows else np.zeros((0, k))
    return [(w1, b1), (w2, np.asarray(b2)), (w3, b3)]


def _deepen(layers, n_hidden: int):
    """Append identity layers until there are ``n_hidden`` hidden layers: relu(I h) = h, h >= 0."""
    if n_hidden < len(layers) - 1:
        raise ValueError(f"the conversion needs {len(layers) - 1} hidden layer(s), got {n_hidden}")
    while len(layers) - 1 < n_hidden:
        n = layers[-2][0].shape[1]
        layers = layers[:-1] + [(np.eye(n), np.zeros(n)), layers[-1]]
    return layers


def _widen(layers, widths: Sequence[int], key: jax.Array, dtype, scale: float = 1.0):
    """Pad hidden layers to ``widths`` (jnp, so it runs under jit inside an initializer).

    Extra units get He-normal incoming weights times ``scale`` (from every unit of the previous
    layer), zero bias and zero weights into every needed unit of the next layer, so the function
    is unchanged.
    """
    out = []
    prev_width = layers[0][0].shape[0]
    for i, (w, b) in enumerate(layers):
        needed_in, needed_out = w.shape
        width = needed_out if i == len(layers) - 1 else int(widths[i])
        if width < needed_out:
            raise ValueError(
                f"hidden layer {i} needs at least {needed_out} units for an exact conversion, "
                f"got width {width}"
            )
        kernel = jnp.zeros((prev_width, width), dtype).at[:needed_in, :needed_out].set(w)
        bias = jnp.zeros((width,), dtype).at[:needed_out].set(b)
        if width > needed_out:
            key, sub = jax.random.split(key)
            extra = jax.random.normal(sub, (prev_width, width - needed_out), dtype)
            kernel = kernel.at[:, needed_out:].set(scale * np.sqrt(2.0 / prev_width) * extra)
        out.append((kernel, bias))
        prev_width = width
    return out


def _balance(layers):
    """Equalizes each hidden unit's incoming and outgoing norms (positive rescaling, exact)."""
    layers = [(w.copy(), b.copy()) for w, b in layers]
    for i in range(len(layers) - 1):
        w, b = layers[i]
        w_next, _ = layers[i + 1]
        n_in = np.sqrt(np.sum(w * w, 0) + b * b)
        n_out = np.sqrt(np.sum(w_next * w_next, 1))
        ok = (n_in > 0) & (n_out > 0)
        a = np.ones_like(n_in)
        a[ok] = np.sqrt(n_out[ok] / n_in[ok])
        w *= a[None, :]
        b *= a
        w_next /= a[:, None]
    return layers


def to_dense(
    model: MARS,
    *,
    input_mean: Sequence[float] | np.ndarray | None = None,
    input_std: Sequence[float] | np.ndarray | None = None,
    balance: bool = False,
    widths: Sequence[int] | None = None,
    key: jax.Array | None = None,
    surrogate: str | None = None,
    x: np.ndarray | None = None,
    spare_terms: Sequence[Term] = (),
    random_scale: float = 1.0,
    dtype=jnp.float32,
) -> dict:
    """Parameters of a ReLU MLP computing a fitted MARS model.

    Args:
      model: a fitted ``MARS``.
      input_mean: [d] mean folded into the first layer: the network takes
        ``(x - input_mean) / input_std``. None: raw inputs (mean 0).
      input_std: [d] standard deviation, None for 1.
      balance: equalize each needed hidden unit's incoming and outgoing weight norms (computed
        before widening; extra units are left as drawn).
      widths: hidden layer widths; None uses the minimal single hidden layer (two for a degree-2
        surrogate). More entries than needed append identity layers; larger widths add units with
        random incoming and zero outgoing weights.
      key: PRNG key for the extra units (required when a width exceeds the minimum).
      surrogate: None for the exact conversion of a degree-1 model; ``"min"`` for the CPWL
        surrogate of a degree-2 model (needs ``x``).
      x: [N, d] points on which the surrogate's output weights are refit.
      spare_terms: degree-1 terms the model does not use (``spare_terms_of``), converted into
        extra first-layer units after the model's own (``unit_count`` units each) with zero
        outgoing weights; deeper identity layers carry them too. Exact conversion only.
      random_scale: factor on the He-normal standard deviation of the random extra units (1:
        He-normal; smaller keeps them from swamping the converted units once they learn).
      dtype: parameter dtype.

    Returns:
      ``{"Dense_0": {"kernel": [d, W0], "bias": [W0]}, ..., "Dense_L": {..., [W_{L-1}, K]}}``.

    Raises:
      ValueError: unfitted model, a degree-2 model without a surrogate, unknown surrogate, bad
        widths or standardization shapes, missing key or points, spare terms that are not degree
        1 or come with a surrogate, a negative ``random_scale``.

    """
    model._check_fitted()
    d = model.n_features_in_
    mean = np.zeros(d) if input_mean is None else np.asarray(input_mean, dtype=np.float64)
    std = np.ones(d) if input_std is None else np.asarray(input_std, dtype=np.float64)
    if mean.shape != (d,) or std.shape != (d,):
        raise ValueError(
            f"input_mean and input_std must have shape ({d},), got {mean.shape} and {std.shape}"
        )
    if np.any(std <= 0) or not np.all(np.isfinite(std)):
        raise ValueError(f"input_std must be positive and finite, got {std}")
    if not random_scale >= 0:
        raise ValueError(f"random_scale must be >= 0, got {random_scale}")
    spare_terms = list(spare_terms)
    bad = [t.name() for t in spare_terms if t.degree != 1]
    if bad:
        raise ValueError(f"spare_terms must be degree-1 terms, got {bad}")
    degree = model.max_degree_
    if surrogate is None:
        if degree > 1:
            raise ValueError(
                f"a degree-{degree} MARS model is not piecewise linear and has no exact ReLU "
                "conversion; pass surrogate='min' with x=... (points to refit on)"
            )
        layers = _exact_layers(model, mean, std, spare_terms)
    elif spare_terms:
        raise ValueError(
            f"spare_terms fill the exact conversion only, not surrogate={surrogate!r} "
            f"({len(spare_terms)} spare terms given)"
        )
    elif surrogate == "min":
        if x is None:
            raise ValueError("surrogate='min' needs x, the points on which to refit the outputs")
        layers = _surrogate_layers(model, mean, std, surrogate_coef(model, x))
    else:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose from {SURROGATES}")
    widths = [w.shape[1] for w, _ in layers[:-1]] if widths is None else list(widths)
    layers = _deepen(layers, len(widths))
    if balance:
        layers = _balance(layers)
    if key is None:
        if any(w > lay[0].shape[1] for w, lay in zip(widths, layers, strict=False)):
            raise ValueError("widening adds random units: pass key=jax.random.key(...)")
        key = jax.random.key(0)  # unused: no extra units
    layers = _widen(layers, widths, key, dtype, random_scale)
    return {f"Dense_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(layers)}


def min_widths(model: MARS, surrogate: str | None = None) -> list[int]:
    """Return the hidden widths of the minimal conversion (one entry per hidden layer)."""
    d = model.n_features_in_
    if surrogate is None:
        return [_exact_layers(model, np.zeros(d), np.ones(d))[0][0].shape[1]]
    layers = _surrogate_layers(
        model, np.zeros(d), np.ones(d), np.zeros((len(model.terms_), model.n_outputs_))
    )
    return [w.shape[1] for w, _ in layers[:-1]]


def spare_terms_of(model: MARS, budget: int, source: MARS | None = None) -> list[Term]:
    """Degree-1 hinges of a forward pass that ``model`` does not use, in forward order, that fit.

    Args:
      model: a fitted degree-1 ``MARS`` (its ``terms_`` are left out).
      budget: first-layer units available for them (hidden width minus ``min_widths``).
      source: the fit whose ``forward_terms_`` supply the hinges: ``model`` itself (None; the
        terms its backward pass pruned) or a longer fit on the same data (e.g. ``thresh = 0``).

    Returns:
      The longest prefix of those terms whose ``unit_count`` sum is at most ``budget`` (earlier
      forward terms reduced the residual more).

    """
    source = model if source is None else source
    kept = {_factor_key(t) for t in model.terms_[1:]}
    out, used = [], 0
    for term in source.forward_terms_:
        if term.is_intercept or term.degree != 1 or _factor_key(term) in kept:
            continue
        if used + unit_count(term) > budget:
            break
        kept.add(_factor_key(term))
        out.append(term)
        used += unit_count(term)
    return out
