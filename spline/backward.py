"""MARS pruning pass: drop terms one at a time and keep the subset with the lowest GCV.

Earth removes, from the model of the first ``s`` terms, the term whose deletion raises the RSS
least (``sum_k beta_jk^2 / (G^-1)_jj``; never the intercept), down to the intercept alone, then
chooses the subset size with the lowest GCV (the first on ties). Which subsets it records depends
on the number of responses:

* one response (leaps' ``BAKWRD``, Miller 2002): the deleted term moves to the end of the current
  order, and the best RSS of each size is the lowest over every prefix of every order visited,
  the starting (forward-pass) order included, so a size can be better than the elimination path;
* several responses (earth's ``EvalSubsetsUsingXtx``, RSS summed over outputs): the elimination
  path itself.

Everything here works on small matrices: the forward pass hands over the projections ``R`` of
every term's column on its orthonormal basis and the basis' projections ``z`` of the targets, so
a subset's least squares fit is a QR factorization of at most nk columns, and the RSS of every
prefix of an order is a running sum over the rotated targets. No pass over the N rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from spline.forward_state import gcv
from spline.orthobasis import QR_TOL_SQ

# earth.fit.R: RSS and GCV values below this are reported as 0 ("for consistency across
# machines").
REPORT_ZERO = 1e-10


@dataclasses.dataclass
class BackwardResult:
    """Output of the pruning pass.

    Attributes:
      selected: indices into the forward pass' kept terms, increasing, intercept (0) first.
      coef: [len(selected), K] least-squares coefficients of the selected terms.
      rss: RSS of the selected subset (summed over outputs).
      rss_path: RSS of the best subset of each size 1..m (index size - 1).
      gcv_path: GCV of those subsets.

    """

    selected: list[int]
    coef: np.ndarray
    rss: float
    rss_path: list[float]
    gcv_path: list[float]


def independent(r: np.ndarray) -> list[int]:
    """Columns of ``r`` [M, m] independent of the ones before them (earth's RegressAndFix).

    A column whose residual against the kept ones is below R's lm tolerance (1e-8 of its norm)
    is dropped; the products of the projections equal those of the columns themselves.
    """
    basis = np.zeros((r.shape[0], 0))
    keep = []
    for j in range(r.shape[1]):
        col = r[:, j]
        res = col - basis @ (basis.T @ col)
        res = res - basis @ (basis.T @ res)
        norm2 = float(res @ res)
        if norm2 > QR_TOL_SQ * float(col @ col):
            keep.append(j)
            basis = np.concatenate([basis, (res / np.sqrt(norm2))[:, None]], axis=1)
    return keep


def _triangular(cols: np.ndarray, z: np.ndarray, rss_out: float):
    """QR of the projections ``cols`` [M, s]: ``(T [s, s], z_head [s, K], rss)``."""
    s = cols.shape[1]
    qa, t = np.linalg.qr(cols, mode="complete")
    zt = qa.T @ z
    return t[:s], zt[:s], rss_out + float(np.sum(zt[s:] ** 2))


def _least_squares(t: np.ndarray, zh: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(t, zh)


def _drop_costs(t: np.ndarray, zh: np.ndarray) -> np.ndarray:
    """RSS increase of deleting each column of the triangular model ``t`` [s, s], ``zh`` [s, K]."""
    beta = _least_squares(t, zh)
    tinv = scipy.linalg.solve_triangular(t, np.eye(t.shape[0]))
    diag = np.maximum(np.sum(tinv * tinv, axis=1), np.finfo(np.float64).tiny)
    return np.sum(beta * beta, axis=1) / diag


def _retriangulate(t: np.ndarray, zh: np.ndarray, cols: list[int]):
    """QR of ``[t[:, cols], zh]``: the triangular factor and rotated targets in the new order."""
    s = len(cols)
    _, rr = np.linalg.qr(np.concatenate([t[:, cols], zh], axis=1), mode="complete")
    return rr[:s, :s], rr[:s, s:], rr[s:, s:]


def _leaps_backward(t, zh, base):
    """Leaps' BAKWRD with one recorded subset per size: ``(rss by size, subset by size)``."""
    m = t.shape[0]
    order = list(range(m))
    # RSS of every prefix of the current order: the targets' rotated components beyond it.
    tail = base + np.concatenate([np.cumsum(np.sum(zh[::-1] ** 2, 1))[::-1], [0.0]])
    best = {size: (float(tail[size]), order[:size]) for size in range(1, m + 1)}
    for size in range(m, 2, -1):
        costs = _drop_costs(t[:size, :size], zh[:size])
        drop = 1 + int(np.argmin(costs[1:]))  # the intercept is forced in
        if drop == size - 1:
            continue
        cols = list(range(drop)) + list(range(drop + 1, size)) + [drop] + list(range(size, m))
        t, zh, _ = _retriangulate(t, zh, cols)
        order = [order[c] for c in cols]
        tail = base + np.concatenate([np.cumsum(np.sum(zh[::-1] ** 2, 1))[::-1], [0.0]])
        for i in range(drop, size - 1):
            # Size i + 1: the prefix now ends one place later than the dropped term's old slot.
            if tail[i + 1] < best[i + 1][0]:
                best[i + 1] = (float(tail[i + 1]), order[: i + 1])
    sizes = range(1, m + 1)
    return [best[k][0] for k in sizes], [sorted(best[k][1]) for k in sizes]


def _xtx_backward(t, zh, base):
    """Earth's EvalSubsetsUsingXtx: the elimination path, ``(rss by size, subset by size)``."""
    m = t.shape[0]
    active = list(range(m))
    rss = base
    rss_path, sets = [0.0] * m, [[] for _ in range(m)]
    rss_path[m - 1], sets[m - 1] = rss, list(active)
    while len(active) > 1:
        drop = 1 + int(np.argmin(_drop_costs(t, zh)[1:]))
        keep = [i for i in range(len(active)) if i != drop]
        t, zh, rest = _retriangulate(t, zh, keep)
        rss += float(np.sum(rest**2))
        active = [active[i] for i in keep]
        rss_path[len(active) - 1], sets[len(active) - 1] = rss, list(active)
    return rss_path, sets


def backward_pass(
    r: np.ndarray, z: np.ndarray, rss_out: float, n_rows: int, penalty: float
) -> BackwardResult:
    """Prunes the basis by GCV.

    Args:
      r: [M, m] projections of the m kept terms' columns (intercept first) on the basis.
      z: [M, K] projections of the targets on the basis.
      rss_out: RSS of the targets outside the basis' span.
      n_rows: N, for the GCV.
      penalty: GCV cost per knot (-1: free).

    Returns:
      A ``BackwardResult``.

    """
    m, k = r.shape[1], z.shape[1]
    t, zh, base = _triangular(r, z, rss_out)
    if k == 1 and m > 2:
        rss_path, sets = _leaps_backward(t, zh, base)
    else:
        rss_path, sets = _xtx_backward(t, zh, base)
    gcv_path = [gcv(v, size + 1, n_rows, penalty) for size, v in enumerate(rss_path)]
    best = int(np.argmin(gcv_path))
    selected = sets[best]
    t, zh, _ = _triangular(r[:, selected], z, rss_out)
    return BackwardResult(
        selected=selected,
        coef=_least_squares(t, zh),
        rss=rss_path[best],
        rss_path=[0.0 if v < REPORT_ZERO else v for v in rss_path],
        gcv_path=[0.0 if v < REPORT_ZERO else v for v in gcv_path],
    )
