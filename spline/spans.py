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
functions work on Python ints (host) and on JAX scalars (the forward pass computes the spans of
interaction parents on the device), hence the ``xp`` argument.
"""

from __future__ import annotations

import math
import numpy as np

# earth.c's literal constants (rounded there; the rounding decides where int() truncates).
ENDSPAN_OFFSET = 7.32193  # 3 + log(20) / log(2)
LOG_2 = 0.69315
MINSPAN_OFFSET = 2.9702  # -log(-log(0.95)): alpha = 0.05 in Friedman's eq. 43
MINSPAN_DIVISOR = 1.7329  # 2.5 log(2)
# earth's Adjust.endspan default: interaction terms use endspan * (1 + 2).
ADJUST_ENDSPAN = 2.0


def endspan(
    n_rows, n_vars: int, degree, endspan_arg: int = 0, adjust: float = ADJUST_ENDSPAN, xp=math
):
    """Rows kept below the lowest knot for a new term of ``degree`` (earth's ``GetEndSpan``).

    Args:
      n_rows: N, all training rows (not the parent's support).
      n_vars: p, the number of predictors (constant ones included, as in earth).
      degree: degree of the new term (1 for children of the intercept).
      endspan_arg: user endspan (> 0), or 0 for Friedman's eq. 45.
      adjust: earth's ``Adjust.endspan``.
      xp: ``math`` for Python ints, ``jax.numpy`` for traced values.

    Returns:
      The endspan (an int, or an int32 scalar under ``jax.numpy``).

    """
    auto = int(ENDSPAN_OFFSET + math.log(n_vars) / LOG_2)
    base = endspan_arg if endspan_arg > 0 else auto
    if xp is math:
        value = base + (int(adjust * base + 0.5) if degree >= 2 else 0)
        value = min(value, n_rows // 2 - 1)
        return max(1, value)
    bump = xp.floor(adjust * base + 0.5).astype(xp.int32)
    value = base + xp.where(degree >= 2, bump, 0)
    value = xp.minimum(value, n_rows // 2 - 1)
    return xp.maximum(1, value)


def minspan(n_rows, n_used, n_vars: int, minspan_arg: int = 0, xp=math):
    """Rows between knots (earth's ``GetSpanParams``): eq. 43 from the parent's support size.

    Args:
      n_rows: N, all training rows (used only for a negative ``minspan_arg``).
      n_used: rows where the parent is > 0.
      n_vars: p.
      minspan_arg: > 0 fixed, 0 automatic, < 0 the number of knots wanted.
      xp: ``math`` or ``jax.numpy``.

    """
    if minspan_arg < 0:
        value = -(-n_rows // (1 - minspan_arg))  # ceil(N / (1 - minspan))
        return max(1, value) if xp is math else xp.maximum(1, value)
    if minspan_arg > 0:
        return minspan_arg if xp is math else xp.asarray(minspan_arg, xp.int32)
    if xp is math:
        # earth casts log(0) = -inf to int for an empty support, then clamps to 1.
        if n_used <= 0:
            return 1
        return max(1, int((MINSPAN_OFFSET + math.log(n_vars * n_used)) / MINSPAN_DIVISOR))
    safe = xp.maximum(n_used, 1).astype(xp.float64)
    value = xp.floor((MINSPAN_OFFSET + xp.log(n_vars * safe)) / MINSPAN_DIVISOR).astype(xp.int32)
    return xp.where(n_used > 0, xp.maximum(1, value), 1)


def startspan(n_rows, end, span, minspan_arg: int = 0, xp=math):
    """Qualifying rows counted from the top before the first knot (earth's ``nStartSpan``).

    Args:
      n_rows: N.
      end: the endspan in force.
      span: the minspan in force.
      minspan_arg: the user's minspan (negative: knots counted, grid anchored at the endspan).
      xp: ``math`` or ``jax.numpy``.

    """
    if minspan_arg < 0:
        # Smallest multiple of minspan not below the endspan, minus one.
        if xp is math:
            return max(1, -(-end // span) * span - 1)
        return xp.maximum(1, -(-end // span) * span - 1)
    avail = n_rows - 2 * end
    if xp is math:
        avail = max(0, avail)
        start = avail // 2  # room for one knot only: put it in the middle
        if avail > span:
            rest = avail - (avail // span) * span
            start = span // 2 if rest == 0 else rest // 2
        return max(1, end + start)
    avail = xp.maximum(0, avail)
    rest = avail - (avail // span) * span
    start = xp.where(avail > span, xp.where(rest == 0, span // 2, rest // 2), avail // 2)
    return xp.maximum(1, end + start)


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


def root_grid(
    xs: np.ndarray, n_vars: int, end: int, span: int, start: int, weighted: bool
) -> np.ndarray:
    """Knot positions of the intercept's children for one predictor, highest first.

    Every row qualifies (the intercept is positive everywhere) except, without weights, the rows
    tied with the maximum (earth requires a hinge that is not identically zero; with weights it
    does not check).

    Args:
      xs: [N] the predictor sorted ascending.
      n_vars: p (unused: kept for symmetry with the device rule).
      end: endspan for degree-1 terms.
      span: minspan of the intercept (N used rows).
      start: earth's start span.
      weighted: whether the fit uses case weights.

    Returns:
      int [C] sorted positions ``i`` (the knot is ``xs[i]``), decreasing, all ``>= end``.

    """
    del n_vars
    n = xs.size
    top = n - 2 if weighted else min(n - 2, int(np.searchsorted(xs, xs[-1], side="left")) - 1)
    first = top - start + 1
    if first < end:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, end - 1, -span, dtype=np.int64)


def spans_for(n_rows: int, n_vars: int, degree: int, n_used: int, endspan_arg: int,
              minspan_arg: int, adjust: float = ADJUST_ENDSPAN) -> tuple[int, int, int]:
    """``(endspan, minspan, start)`` for a new term of ``degree`` under a parent with ``n_used``."""
    end = endspan(n_rows, n_vars, degree, endspan_arg, adjust)
    span = minspan(n_rows, n_used, n_vars, minspan_arg)
    return end, span, startspan(n_rows, end, span, minspan_arg)

