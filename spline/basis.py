"""MARS basis functions: a term is a parent term times one hinge (or one linear factor).

``Term(variable=j, knot=t, direction=+1, parent=P)`` is ``P(x) * max(0, x_j - t)``; direction -1 is
``P(x) * max(0, t - x_j)`` and direction 0 is ``P(x) * x_j`` (a linear term, earth's
``Auto.linpreds``). The intercept is the only term without a parent. Knots are in the units of the
training inputs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

HINGE_UP = 1
HINGE_DOWN = -1
LINEAR = 0


@dataclasses.dataclass(frozen=True)
class Term:
    """One MARS basis function.

    Attributes:
      variable: input column j, or -1 for the intercept.
      knot: hinge location t (NaN for linear terms and the intercept).
      direction: +1 for max(0, x_j - t), -1 for max(0, t - x_j), 0 for linear x_j.
      parent: the term this one multiplies (the intercept for degree-1 terms); None for the
        intercept itself.

    """

    variable: int
    knot: float
    direction: int
    parent: Term | None

    @property
    def is_intercept(self) -> bool:
        return self.parent is None

    @property
    def degree(self) -> int:
        return 0 if self.parent is None else self.parent.degree + 1

    def factors(self) -> list[Term]:
        """Return the non-intercept terms whose factors multiply into this one, root first."""
        chain = []
        term = self
        while term.parent is not None:
            chain.append(term)
            term = term.parent
        return chain[::-1]

    def variables(self) -> set[int]:
        return {t.variable for t in self.factors()}

    def factor_values(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the term's own factor (hinge or linear) at ``x`` [N, d] -> [N]."""
        xj = x[:, self.variable]
        if self.direction == LINEAR:
            return xj
        return np.maximum(0.0, self.direction * (xj - self.knot))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the basis function at ``x`` [N, d] -> [N]."""
        out = np.ones(x.shape[0], dtype=np.float64)
        for factor in self.factors():
            out = out * factor.factor_values(x)
        return out

    def name(self, feature_names: list[str] | None = None) -> str:
        """earth-style name: ``(Intercept)``, ``h(x1-0.5)``, ``h(0.5-x1)``, ``x1``, products."""
        if self.parent is None:
            return "(Intercept)"
        parts = []
        for f in self.factors():
            v = feature_names[f.variable] if feature_names else f"x{f.variable}"
            if f.direction == LINEAR:
                parts.append(v)
            elif f.direction == HINGE_UP:
                sign = "-" if f.knot >= 0 else "+"
                parts.append(f"h({v}{sign}{_fmt(abs(f.knot))})")
            else:
                parts.append(f"h({_fmt(f.knot)}-{v})")
        return "*".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


INTERCEPT = Term(variable=-1, knot=math.nan, direction=LINEAR, parent=None)


def basis_matrix(terms: list[Term], x: np.ndarray) -> np.ndarray:
    """Evaluate every term: ``x`` [N, d] -> [N, len(terms)] float64."""
    x = np.asarray(x, dtype=np.float64)
    cache: dict[int, np.ndarray] = {}
    cols = []
    for term in terms:
        cols.append(_eval_cached(term, x, cache))
    return np.stack(cols, axis=1) if cols else np.zeros((x.shape[0], 0))


def _eval_cached(term: Term, x: np.ndarray, cache: dict[int, np.ndarray]) -> np.ndarray:
    key = id(term)
    if key not in cache:
        if term.parent is None:
            cache[key] = np.ones(x.shape[0], dtype=np.float64)
        else:
            cache[key] = _eval_cached(term.parent, x, cache) * term.factor_values(x)
    return cache[key]
