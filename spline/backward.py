"""MARS backward pass: prune terms one at a time and keep the subset with the lowest GCV.

Works on the M x M Gram matrix of the centered basis in numpy float64 (M <= a few hundred), so a
whole pass costs one N M^2 product plus O(M^4) small linear algebra. Dropping term j from a least
squares fit raises the RSS by ``sum_k beta_jk^2 / (G^-1)_jj`` (summed over outputs), which ranks all
candidates from one inverse. The intercept is never dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spline.forward import gcv


@dataclasses.dataclass
class BackwardResult:
    """Output of the pruning pass.

    Attributes:
      selected: indices (into the forward basis) of the kept terms, increasing, intercept first.
      coef: [len(selected), K] least-squares coefficients of the kept terms.
      rss: residual sum of squares of the kept model, summed over outputs.
      gcv_path: GCV of the best subset of each size 1..M (index size - 1).

    """

    selected: list[int]
    coef: np.ndarray
    rss: float
    gcv_path: list[float]


def _fit(gram: np.ndarray, bty: np.ndarray, yy: float, cols: list[int]):
    """Least squares on the centered columns ``cols`` from the Gram matrix.

    Returns:
      ``(beta [s, K], inverse Gram [s, s], rss)``.

    """
    if not cols:
        return np.zeros((0, bty.shape[1])), np.zeros((0, 0)), yy
    g = gram[np.ix_(cols, cols)]
    ginv = np.linalg.pinv(g, hermitian=True)
    beta = ginv @ bty[cols]
    rss = yy - float(np.sum(beta * bty[cols]))
    return beta, ginv, max(rss, 0.0)


def backward_pass(basis: np.ndarray, y: np.ndarray, penalty: float) -> BackwardResult:
    """Prunes the basis by GCV.

    Args:
      basis: [N, M] basis values, column 0 the intercept (ones).
      y: [N, K] targets.
      penalty: GCV cost per knot (earth: 2 for degree 1, 3 otherwise).

    Returns:
      A ``BackwardResult``.

    """
    n, m = basis.shape
    means = basis[:, 1:].mean(0)
    bc = basis[:, 1:] - means
    # Unit-norm columns keep the Gram matrix well conditioned; the RSS does not depend on scaling.
    norms = np.sqrt(np.sum(bc * bc, 0))
    norms[norms == 0] = 1.0
    bc = bc / norms
    ymean = y.mean(0)
    yc = y - ymean
    gram = bc.T @ bc
    bty = bc.T @ yc
    yy = float(np.sum(yc * yc))

    active = list(range(m - 1))  # indices into the non-intercept columns
    best_sets: dict[int, list[int]] = {}
    gcv_path = [0.0] * m
    while True:
        beta, ginv, rss = _fit(gram, bty, yy, active)
        size = len(active) + 1
        best_sets[size] = list(active)
        gcv_path[size - 1] = gcv(rss, size, n, penalty)
        if not active:
            break
        diag = np.maximum(np.diag(ginv), np.finfo(np.float64).tiny)
        increase = np.sum(beta * beta, axis=1) / diag
        active.pop(int(np.argmin(increase)))
    best_size = int(np.argmin(gcv_path)) + 1
    cols = sorted(best_sets[best_size])
    beta, _, rss = _fit(gram, bty, yy, cols)
    coef_rest = beta / norms[cols, None]
    intercept = ymean - means[cols] @ coef_rest
    coef = np.concatenate([intercept[None, :], coef_rest], axis=0)
    return BackwardResult(
        selected=[0] + [c + 1 for c in cols],
        coef=coef,
        rss=rss,
        gcv_path=gcv_path,
    )
