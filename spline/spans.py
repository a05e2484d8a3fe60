"""Where MARS may place knots: earth 5.3.2's minspan, endspan and start-span rules.

A parent basis function ``P`` and a predictor ``x`` give candidate knots at rows of ``x`` sorted
ascending. Walking down from the top row, earth counts the *qualifying* rows (the row above the
cut has ``P > 0``, and the hinge is not identically zero) and places a knot at the
``start``-th qualifying row, then at every ``minspan``-th one, never below sorted position
``endspan``. The three numbers follow Friedman (1991) eqs. 43 and 45 with earth's constants:

* ``endspan = int(7.32193 + log(p) / 0.69315)`` (``3 + log2(20 p)``), plus
  ``int(adjust_endspan * endspan + 0.5)`` for terms of degree 2 and more, capped at ``N // 2 - 1``;
* ``minspan = int((2.9702 + log(p * N_used)) / 1.7329)`` with ``N_used`` the rows where ``P > 0``;
* ``start = endspan + (N - 2 endspan - k minspan) // 2`` for the largest ``k`` that fits (centring
  the grid), or ``endspan + minspan // 2`` when the grid fits exactly.

A negative ``minspan`` asks for that many knots (``minspan = ceil(N / (1 - minspan))``). The
``*_device`` variants take traced scalars (the forward pass computes the spans of interaction
parents on the device, from their support).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# earth.c's literal constants (rounded there; the rounding decides where int() truncates).
ENDSPAN_OFFSET = 7.32193  # 3 + log(20) / log(2)
LOG_2 = 0.69315
MINSPAN_OFFSET = 2.9702  # -log(-log(0.95)): alpha = 0.05 in Friedman's eq. 43
MINSPAN_DIVISOR = 1.7329  # 2.5 log(2)
# earth's Adjust.endspan default: interaction terms use endspan * (1 + 2).
ADJUST_ENDSPAN = 2.0


def endspan(
    n_rows: int, n_vars: int, degree: int, endspan_arg: int = 0, adjust: float = ADJUST_ENDSPAN
) -> int:
    """Rows kept below the lowest knot for a new term of ``degree`` (earth's ``GetEndSpan``).

    Args:
      n_rows: N, all training rows (not the parent's support).
      n_vars: p, the number of predictors (constant ones included, as in earth).
      degree: degree of the new term (1 for children of the intercept).
      endspan_arg: user endspan (> 0), or 0 for Friedman's eq. 45.
      adjust: earth's ``Adjust.endspan``.

    """
    value = endspan_arg if endspan_arg > 0 else int(ENDSPAN_OFFSET + math.log(n_vars) / LOG_2)
    if degree >= 2:
        value += int(adjust * value + 0.5)
    return max(1, min(value, n_rows // 2 - 1))


def minspan(n_rows: int, n_used: int, n_vars: int, minspan_arg: int = 0) -> int:
    """Rows between knots (earth's ``GetSpanParams``): eq. 43 from the parent's support size.

    Args:
      n_rows: N, all training rows (used only for a negative ``minspan_arg``).
      n_used: rows where the parent is > 0.
      n_vars: p.
      minspan_arg: > 0 fixed, 0 automatic, < 0 the number of knots wanted.

    """
    if minspan_arg < 0:
        return max(1, -(-n_rows // (1 - minspan_arg)))  # ceil(N / (1 - minspan))
    if minspan_arg > 0:
        return minspan_arg
    # earth casts log(0) = -inf to int for an empty support, then clamps to 1.
    if n_used <= 0:
        return 1
    return max(1, int((MINSPAN_OFFSET + math.log(n_vars * n_used)) / MINSPAN_DIVISOR))


def startspan(n_rows: int, end: int, span: int, minspan_arg: int = 0) -> int:
    """Qualifying rows counted from the top before the first knot (earth's ``nStartSpan``).

    Args:
      n_rows: N.
      end: the endspan in force.
      span: the minspan in force.
      minspan_arg: the user's minspan (negative: knots counted, grid anchored at the endspan).

    """
    if minspan_arg < 0:
        return max(1, -(-end // span) * span - 1)  # smallest multiple of span >= end, minus 1
    avail = max(0, n_rows - 2 * end)
    start = avail // 2  # room for one knot only: put it in the middle
    if avail > span:
        rest = avail % span
        start = span // 2 if rest == 0 else rest // 2
    return max(1, end + start)


def minspan_device(
    n_rows: ArrayLike, n_used: ArrayLike, n_vars: ArrayLike, minspan_arg: ArrayLike
) -> jax.Array:
    """``minspan`` for traced int32 arguments (interaction parents, on the device)."""
    knots = -(-n_rows // (1 - jnp.minimum(minspan_arg, 0)))
    safe = jnp.maximum(n_used, 1).astype(jnp.float64)
    auto = jnp.floor((MINSPAN_OFFSET + jnp.log(n_vars * safe)) / MINSPAN_DIVISOR)
    auto = jnp.where(n_used > 0, auto.astype(jnp.int32), 1)
    value = jnp.where(minspan_arg < 0, knots, jnp.where(minspan_arg > 0, minspan_arg, auto))
    return jnp.maximum(1, value)


def startspan_device(
    n_rows: ArrayLike, end: ArrayLike, span: ArrayLike, minspan_arg: ArrayLike
) -> jax.Array:
    """``startspan`` for traced int32 arguments."""
    knots = jnp.maximum(1, -(-end // span) * span - 1)
    avail = jnp.maximum(0, n_rows - 2 * end)
    rest = avail % span
    start = jnp.where(avail > span, jnp.where(rest == 0, span // 2, rest // 2), avail // 2)
    return jnp.where(minspan_arg < 0, knots, jnp.maximum(1, end + start))


def max_knots(n_rows: int, n_vars: int, end: int, minspan_arg: int) -> int:
    """Upper bound on the knots of one parent and one predictor, over all support sizes.

    With the automatic minspan, a parent with ``n`` support rows has at most
    ``n // minspan(n) + 1`` knots; the maximum over ``n <= N`` bounds every parent.
    """
    if minspan_arg != 0:
        span = minspan(n_rows, n_rows, n_vars, minspan_arg)
        return max(1, (n_rows - 2 * end) // span + 1)
    n = np.arange(1, n_rows + 1, dtype=np.float64)
    spans = np.maximum(1, np.floor((MINSPAN_OFFSET + np.log(n_vars * n)) / MINSPAN_DIVISOR))
    return int(np.max(np.floor(n / spans))) + 1


def root_grid(xs: np.ndarray, end: int, span: int, start: int, weighted: bool) -> np.ndarray:
    """Knot positions of the intercept's children for one predictor, highest first.

    Every row qualifies (the intercept is positive everywhere) except, without weights, the rows
    tied with the maximum (earth requires a hinge that is not identically zero; with weights it
    does not check).

    Args:
      xs: [N] the predictor sorted ascending.
      end: endspan for degree-1 terms.
      span: minspan of the intercept (N used rows).
      start: earth's start span.
      weighted: whether the fit uses case weights.

    Returns:
      int [C] sorted positions ``i`` (the knot is ``xs[i]``), decreasing, all ``>= end``.

    """
    n = xs.size
    top = n - 2 if weighted else min(n - 2, int(np.searchsorted(xs, xs[-1], side="left")) - 1)
    first = top - start + 1
    if first < end:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, end - 1, -span, dtype=np.int64)
