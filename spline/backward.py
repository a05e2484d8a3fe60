"""MARS pruning pass: drop terms one at a time and keep the subset with the lowest GCV.

Earth (leaps' backward elimination for one response, ``EvalSubsetsUsingXtx`` for several)
removes at each size the term whose deletion raises the RSS least, ``sum_k beta_jk^2 /
(G^-1)_jj``, never the intercept, then chooses the size with the lowest GCV (the first on ties).

Everything here works on small matrices: the forward pass hands over the projections ``R`` of
every term's column on its orthonormal basis and the basis' projections ``z`` of the targets, so
a subset's least squares fit is a QR factorization of ``R[:, subset]`` (at most nk columns), and
deleting a term is one re-triangularization. No pass over the N rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from spline.forward import gcv

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


def _triangular(cols: np.ndarray, z: np.ndarray, rss_out: float):
    """QR of the projections ``cols`` [M, s]: ``(T [s, s], z_head [s, K], rss)``."""
    s = cols.shape[1]
    qa, t = np.linalg.qr(cols, mode="complete")
    zt = qa.T @ z
    return t[:s], zt[:s], rss_out + float(np.sum(zt[s:] ** 2))


def _least_squares(t: np.ndarray, zh: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(t, zh)


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
    m = r.shape[1]
    active = list(range(m))
    t, zh, rss = _triangular(r, z, rss_out)
    sets: dict[int, list[int]] = {m: list(active)}
    rss_path = [0.0] * m
    rss_path[m - 1] = rss
    while len(active) > 1:
        beta = _least_squares(t, zh)
        tinv = scipy.linalg.solve_triangular(t, np.eye(len(active)))
        diag = np.maximum(np.sum(tinv * tinv, axis=1), np.finfo(np.float64).tiny)
        increase = np.sum(beta * beta, axis=1) / diag
        drop = 1 + int(np.argmin(increase[1:]))  # never the intercept
        keep = [i for i in range(len(active)) if i != drop]
        _, rr = np.linalg.qr(np.concatenate([t[:, keep], zh], axis=1), mode="complete")
        s = len(keep)
        rss += float(np.sum(rr[s, s:] ** 2))
        t, zh = rr[:s, :s], rr[:s, s:]
        active = [active[i] for i in keep]
        sets[s] = list(active)
        rss_path[s - 1] = rss
    gcv_path = [gcv(v, size + 1, n_rows, penalty) for size, v in enumerate(rss_path)]
    best = int(np.argmin(gcv_path)) + 1
    selected = sets[best]
    t, zh, rss_sel = _triangular(r[:, selected], z, rss_out)
    coef = _least_squares(t, zh)
    return BackwardResult(
        selected=selected,
        coef=coef,
        rss=rss_path[best - 1],
        rss_path=[0.0 if v < REPORT_ZERO else v for v in rss_path],
        gcv_path=[0.0 if v < REPORT_ZERO else v for v in gcv_path],
    )
