"""MARS forward pass: the fast knot search (Friedman 1991, section 3.9), jitted in JAX.

The forward pass grows a basis greedily. For a parent basis function ``w`` and a variable ``x_j``,
adding the mirrored hinges ``w * max(0, x_j - t)`` and ``w * max(0, t - x_j)`` lowers the residual
sum of squares by an amount that depends on ``t`` only through prefix sums over the rows sorted by
``x_j``: of ``w q_m`` and ``w x q_m`` (``q_m`` the orthonormal basis columns), ``w y``, ``w x y``,
``w^2``, ``w^2 x`` and ``w^2 x^2``. Each variable is sorted once; the sums at every candidate knot
of every variable give at once the hinges' projections on the basis, their residual Gram matrix
and their correlation with the residual, hence every candidate's RSS reduction.

For the constant parent (every degree-1 term) the orthonormal columns never change once added, so
the squared projections ``|Q^T h|^2`` and ``(Q^T h) . (Q^T y)`` only gain the new column's term:
they are accumulated, and a step costs O(d N) for the new column's sums on earth's knot grid plus
O(d C K) to score (C knots per variable, K outputs), independent of the number of terms. Parents of
interaction terms (degree 2) are kept the same way (built once in O(d N M), then O(d N) per new
column with a full-length cumulative sum over their own candidate knots).

Arrays have static shapes (basis padded to ``max_terms`` columns, knots padded per variable), so
each function compiles once per problem size. Everything here runs in float64: the scores are
differences of large sums and float32 loses the small RSS gains that decide late steps. The caller
scopes x64 with ``jax.enable_x64(True)``; nothing flips the global flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from spline.basis import HINGE_DOWN, HINGE_UP, INTERCEPT, LINEAR, Term

# Friedman (1991) eqs. 43 and 45 with alpha = 0.05, the values R's earth uses.
SPAN_ALPHA = 0.05
# The factor 2.5 in eq. 43 (Friedman's choice, kept by earth).
MINSPAN_DIVISOR = 2.5
# earth's Adjust.endspan: interaction terms use endspan * 2.
INTERACTION_ENDSPAN_FACTOR = 2
# A candidate column whose squared norm after projection on the basis is below this fraction of its
# own squared norm is treated as linearly dependent (float64 prefix-sum round-off is ~1e-13 here).
DEPENDENCE_TOL = 1e-9


def default_minspan(n_support: int, n_features: int, alpha: float = SPAN_ALPHA) -> int:
    """Friedman's eq. 43, truncated to an int as earth does.

    Args:
      n_support: number of rows where the parent basis function is nonzero.
      n_features: number of input variables p.
      alpha: probability of a run of noise being mistaken for a knot.

    Returns:
      The minimum number of rows between candidate knots (at least 1).

    """
    value = -math.log2(-(1.0 / (n_features * n_support)) * math.log(1.0 - alpha)) / MINSPAN_DIVISOR
    return max(1, int(value))


def default_endspan(n_features: int, alpha: float = SPAN_ALPHA) -> int:
    """Friedman's eq. 45, truncated to an int as earth does (endspan 10 for p = 10)."""
    return max(1, int(3.0 - math.log2(alpha / n_features)))


def _grid_valid(ranks: np.ndarray, n_support: int, endspan: int) -> np.ndarray:
    """Which grid ranks keep ``endspan`` support rows on each side of the knot."""
    return (ranks >= endspan) & (ranks <= n_support - 1 - endspan)


def candidate_positions(
    xs: np.ndarray, support: np.ndarray, minspan: int, endspan: int
) -> np.ndarray:
    """Positions (in sorted order) of the candidate knots of one variable for one parent.

    A knot ``t = xs[i]`` splits the parent's support into ``x <= t`` and ``x > t``. Candidates keep
    ``endspan`` support rows on each side, are ``minspan`` support rows apart on earth's grid
    (support ranks r, counted from 0 at the minimum, with ``r + 1`` a multiple of minspan),
    Inside a run of tied values every position gives the same hinges (tied rows contribute
    ``x - t = 0``), so ties need no special care; a knot at the minimum makes the pair one linear
    function (earth's ``Auto.linpreds`` case), handled by the caller.

    Args:
      xs: [N] the variable's values, sorted ascending.
      support: [N] bool, the parent's support in the same order.
      minspan: rows between candidate knots.
      endspan: rows kept outside the extreme knots.

    Returns:
      int [C] increasing positions into ``xs``.

    """
    idx = np.flatnonzero(support)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = grid_ranks(idx.size, minspan)
    del xs  # knots are xs[positions]; the grid depends only on the support
    return idx[ranks[_grid_valid(ranks, idx.size, endspan)]]


def root_candidates(xs: np.ndarray, minspan: int, endspan: int) -> tuple[np.ndarray, np.ndarray]:
    """All grid points of the constant parent (support = every row) and which are usable.

    Returns:
      ``(pos [nb], valid [nb])``: the grid positions and the mask that selects exactly
      ``candidate_positions(xs, all rows, minspan, endspan)``.

    """
    ranks = grid_ranks(xs.size, minspan)
    return ranks, _grid_valid(ranks, xs.size, endspan)


def _stats(pq, pxq, tq, txq, py, pxy, ty, txy, pw, tw, knots, qty):
    """Score statistics of one parent from prefix sums at its candidates.

    Args:
      pq: [d, M, C] prefix sums of ``w q`` at the candidates.
      pxq: [d, M, C] prefix sums of ``w x q``.
      tq: [d, M] totals of ``w q``.
      txq: [d, M] totals of ``w x q``.
      py: [d, K, C] prefix sums of ``w y``.
      pxy: [d, K, C] prefix sums of ``w x y``.
      ty: [d, K] totals of ``w y``.
      txy: [d, K] totals of ``w x y``.
      pw: [d, 3, C] prefix sums of ``w^2``, ``w^2 x``, ``w^2 x^2``.
      tw: [d, 3] their totals.
      knots: [d, C] knot values.
      qty: [M, K] ``Q^T y``.

    Returns:
      dict: ``hyp``, ``hym`` [d, K, C] (hinges . y), ``hhp``, ``hhm`` [d, C] (hinge norms^2),
      ``uu``, ``vv``, ``uv`` [d, C] (inner products of the hinges' projections on the basis),
      ``uq``, ``vq`` [d, K, C] (projections . q^T y), and for the linear term ``hyl`` [d, K],
      ``hhl`` [d], ``ll`` [d], ``lq`` [d, K].

    """
    tk = knots[:, None, :]
    # Sums over x > t are totals minus prefix sums; sums over x <= t are the prefix sums.
    u = (txq[..., None] - pxq) - tk * (tq[..., None] - pq)  # Q^T h+  [d, M, C]
    v = tk * pq - pxq  # Q^T h-
    aw = tw[..., None] - pw
    return {
        "hyp": (txy[..., None] - pxy) - tk * (ty[..., None] - py),
        "hym": tk * py - pxy,
        "hhp": aw[:, 2] - 2 * knots * aw[:, 1] + knots * knots * aw[:, 0],
        "hhm": pw[:, 2] - 2 * knots * pw[:, 1] + knots * knots * pw[:, 0],
        "uu": jnp.sum(u * u, 1),
        "vv": jnp.sum(v * v, 1),
        "uv": jnp.sum(u * v, 1),
        "uq": jnp.einsum("dmc,mk->dkc", u, qty),
        "vq": jnp.einsum("dmc,mk->dkc", v, qty),
        "hyl": txy,
        "hhl": tw[:, 2],
        "ll": jnp.sum(txq * txq, -1),
        "lq": txq @ qty,
    }


def _rows(w, q, y, xj, pj):
    """Return one variable's summands in sorted order: ``w q`` [M, N], ``w y`` [K, N], ``w^2``."""
    ws = w[pj]
    return (q[pj] * ws[:, None]).T, (y[pj] * ws[:, None]).T, ws * ws


@jax.jit
def build_stats(w, q, y, qty, xs, perm, cand, knots):
    """Score statistics of every candidate knot of every variable for one parent, from scratch.

    O(d N M): used for the parents of interaction terms, rebuilt at each step.

    Args:
      w: [N] parent basis values.
      q: [N, M] orthonormal basis (zero columns beyond the current size).
      y: [N, K] targets.
      qty: [M, K] ``q^T y``.
      xs: [d, N] each variable sorted ascending.
      perm: [d, N] the sorting permutations.
      cand: [d, C] candidate positions into the sorted order (padding repeats a valid position).
      knots: [d, C] the candidate knots.

    Returns:
      The statistics dict of ``_stats``.

    """

    def per_var(args):
        xj, pj, cj = args
        wq, wy, w2 = _rows(w, q, y, xj, pj)
        rows = jnp.concatenate([wq, wq * xj, wy, wy * xj, jnp.stack([w2, w2 * xj, w2 * xj * xj])])
        c = jnp.cumsum(rows, axis=1)
        return c[:, cj], c[:, -1]

    at, tot = jax.lax.map(per_var, (xs, perm, cand))
    m, k = q.shape[1], y.shape[1]
    cuts = np.cumsum([m, m, k, k])
    pq, pxq, py, pxy, pw = jnp.split(at, cuts, axis=1)
    tq, txq, ty, txy, tw = jnp.split(tot, cuts, axis=1)
    return _stats(pq, pxq, tq, txq, py, pxy, ty, txy, pw, tw, knots, qty)


def grid_size(n_rows: int, minspan: int) -> int:
    """Return the size of earth's knot grid: ranks r (0 at the minimum) with minspan | r + 1."""
    return n_rows // minspan


def grid_ranks(n_rows: int, minspan: int) -> np.ndarray:
    """Ranks of the grid points, increasing: ``minspan - 1, 2 minspan - 1, ...``."""
    return np.arange(1, grid_size(n_rows, minspan) + 1) * minspan - 1


def _grid_prefix(v, minspan: int):
    """Inclusive prefix sums of ``v`` [..., N] at the grid ranks: ``([..., nb], totals [...])``.

    Block sums plus a cumulative sum over the N / minspan blocks: much cheaper than a full-length
    cumulative sum, and exact up to float64 round-off.
    """
    n = v.shape[-1]
    nb = grid_size(n, minspan)
    head = v[..., : nb * minspan]
    # Strided adds fuse into one loop; XLA's reduction over a short minor axis is several times
    # slower on CPU.
    blocks = sum(head[..., i::minspan] for i in range(minspan))
    return jnp.cumsum(blocks, -1), jnp.sum(v, -1)


@functools.partial(jax.jit, static_argnames=("minspan",))
def build_root_stats(y, xs, perm, knots, *, minspan: int):
    """Score statistics of the constant parent on earth's grid, with the basis ``{1 / sqrt(N)}``.

    Args:
      y: [N, K] targets.
      xs: [d, N] each variable sorted ascending.
      perm: [d, N] the sorting permutations.
      knots: [d, nb] knot values at ``grid_ranks(N, minspan)``.
      minspan: grid step (static).

    Returns:
      The statistics dict of ``_stats`` (M = 1).

    """
    n, k = y.shape
    c0 = 1.0 / math.sqrt(n)

    def per_var(args):
        xj, pj = args
        ys = y[pj].T  # [K, N]
        rows = jnp.concatenate([jnp.stack([jnp.ones_like(xj), xj, xj * xj]), ys, ys * xj])
        return _grid_prefix(rows, minspan)

    at, tot = jax.lax.map(per_var, (xs, perm))
    pw, tw = at[:, :3], tot[:, :3]
    qty = c0 * jnp.sum(y, 0, keepdims=True)
    return _stats(
        c0 * pw[:, :1], c0 * pw[:, 1:2], c0 * tw[:, :1], c0 * tw[:, 1:2],
        at[:, 3 : 3 + k], at[:, 3 + k :], tot[:, 3 : 3 + k], tot[:, 3 + k :],
        pw, tw, knots, qty,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("minspan",), donate_argnums=(0,))
def add_root_column(stats, qcol, qty_m, xs, perm, knots, *, minspan: int):
    """Add a new basis column to the constant parent's statistics: O(d N).

    The projections of a hinge on the basis only gain the new column's term, because earlier
    orthonormal columns never change; so the running inner products are updated in place.

    Args:
      stats: the constant parent's statistics (donated).
      qcol: [N] the new orthonormal column.
      qty_m: [K] ``qcol . y``.
      xs: [d, N] each variable sorted ascending.
      perm: [d, N] the sorting permutations.
      knots: [d, nb] knots at the grid.
      minspan: grid step (static).

    Returns:
      Updated statistics.

    """
    qs = qcol[perm]  # [d, N]
    at, tot = _grid_prefix(jnp.stack([qs, qs * xs], axis=1), minspan)  # [d, 2, nb], [d, 2]
    return _accumulate(stats, at, tot, knots, qty_m)


@functools.partial(jax.jit, donate_argnums=(0,))
def add_parent_column(stats, w, qcol, qty_m, xs, perm, cand, knots):
    """``add_root_column`` for an interaction parent ``w`` [N] at its candidates ``cand`` [d, C]."""
    ws = (w * qcol)[perm]  # [d, N]
    c = jnp.cumsum(jnp.stack([ws, ws * xs], axis=1), axis=2)  # [d, 2, N]
    at = jnp.take_along_axis(c, cand[:, None, :], axis=2)
    return _accumulate(stats, at, c[:, :, -1], knots, qty_m)


def _accumulate(stats, at, tot, knots, qty_m):
    """Add one column's terms, from its prefix sums ``at`` [d, 2, C] and totals [d, 2]."""
    u = (tot[:, 1, None] - at[:, 1]) - knots * (tot[:, 0, None] - at[:, 0])  # [d, C]
    v = knots * at[:, 0] - at[:, 1]
    ul = tot[:, 1]
    out = dict(stats)
    out["uu"] = stats["uu"] + u * u
    out["vv"] = stats["vv"] + v * v
    out["uv"] = stats["uv"] + u * v
    out["uq"] = stats["uq"] + u[:, None, :] * qty_m[None, :, None]
    out["vq"] = stats["vq"] + v[:, None, :] * qty_m[None, :, None]
    out["ll"] = stats["ll"] + ul * ul
    out["lq"] = stats["lq"] + ul[:, None] * qty_m[None, :]
    return out


def _safe_div(num, den, ok):
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


@jax.jit
def score(stats, valid, var_ok):
    """RSS reductions of every candidate hinge pair, single hinge and linear term.

    With ``h`` a hinge, ``u = Q^T h`` and ``r`` the residual, adding ``h`` lowers the RSS by
    ``(h . r)^2 / (|h|^2 - |u|^2)`` summed over outputs, where ``h . r = h . y - u . Q^T y``; the
    pair is scored by sequential Gram-Schmidt (plus hinge, then the minus hinge orthogonalized).

    Args:
      stats: statistics dict (``build_stats``/``build_root_stats``), [d, ...] per variable.
      valid: [d, C] bool, real (not padding) candidates.
      var_ok: [d] bool, variables this parent may use.

    Returns:
      dict of small arrays: ``pair`` (best pair reduction, its variable, candidate index and the
      number of independent columns), ``single`` (best one-hinge reduction, variable, candidate,
      direction +1/-1), ``linear`` [d] the linear-term reductions (-inf where not allowed).

    """
    st = stats
    a = st["hyp"] - st["uq"]  # residual correlations [d, K, C]
    b = st["hym"] - st["vq"]
    hhp, hhm = st["hhp"], st["hhm"]
    g11 = hhp - st["uu"]
    g22 = hhm - st["vv"]
    g12 = -st["uv"]
    okp = (g11 > DEPENDENCE_TOL * hhp) & (hhp > 0)
    okm = (g22 > DEPENDENCE_TOL * hhm) & (hhm > 0)
    red_p = _safe_div(jnp.sum(a * a, 1), g11, okp)
    red_m = _safe_div(jnp.sum(b * b, 1), g22, okm)
    r = _safe_div(g12, g11, okp)
    g22c = g22 - r * g12
    b_c = b - r[:, None] * a
    okc = okm & (g22c > DEPENDENCE_TOL * hhm)
    red_pair = red_p + _safe_div(jnp.sum(b_c * b_c, 1), g22c, okc)
    ncols = okp.astype(jnp.int32) + okc.astype(jnp.int32)
    mask = valid & var_ok[:, None]
    neg = -jnp.inf
    pair = jnp.where(mask, red_pair, neg)
    j, c = jnp.unravel_index(jnp.argmax(pair), pair.shape)
    single_all = jnp.where(mask[None], jnp.stack([red_p, red_m]), neg)
    sdir, sj, sc = jnp.unravel_index(jnp.argmax(single_all), single_all.shape)
    al = st["hyl"] - st["lq"]
    gl = st["hhl"] - st["ll"]
    okl = (gl > DEPENDENCE_TOL * st["hhl"]) & (st["hhl"] > 0) & var_ok
    red_lin = jnp.where(okl, _safe_div(jnp.sum(al * al, -1), gl, okl), neg)
    return {
        "pair": (pair[j, c], j, c, ncols[j, c]),
        "single": (single_all[sdir, sj, sc], sj, sc, 1 - 2 * sdir),
        "linear": red_lin,
    }


@jax.jit
def append_column(q, h, m):
    """Orthonormalizes ``h`` against ``q`` (two Gram-Schmidt passes) and stores it at column m.

    Args:
      q: [N, M] orthonormal columns (zeros beyond the current size).
      h: [N] new column.
      m: int, the index to write.

    Returns:
      ``(q, ok)``: updated basis; ok is False when h is (numerically) in the span of q, in which
      case q is returned unchanged.

    """
    h1 = h - q @ (q.T @ h)
    h2 = h1 - q @ (q.T @ h1)
    n2 = h2 @ h2
    ok = n2 > DEPENDENCE_TOL * (h @ h)
    col = jnp.where(ok, h2 / jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)
    q = jax.lax.dynamic_update_slice(q, jnp.where(ok, col, q[:, m])[:, None], (0, m))
    return q, ok


@jax.jit
def hinge_column(w, xcol, knot, direction, offset):
    """``w * max(0, direction * (x - knot))``, or ``w * (x + offset)`` when direction is 0.

    ``x`` is a centered, scaled column and ``offset = mean / scale``, so a linear factor is the raw
    variable divided by its scale: a child of a linear term then spans the same functions as the
    raw-unit term that ``predict`` evaluates. Shapes [N].
    """
    hinge = jnp.maximum(0.0, direction * (xcol - knot))
    return w * jnp.where(direction == 0, xcol + offset, hinge)


@jax.jit
def project(q, y):
    """``q^T y`` [M, K] and the residual sum of squares ``|y|^2 - |q^T y|^2``."""
    qty = q.T @ y
    return qty, jnp.sum(y * y) - jnp.sum(qty * qty)


def pad_candidates(cands: list[np.ndarray], round_pow2: bool) -> tuple[np.ndarray, np.ndarray]:
    """Stacks per-variable candidate positions into a padded [d, C] array.

    With ``round_pow2`` the width C is rounded up to a power of two so that parents with different
    supports share compiled functions. Padding repeats position 0 and is marked invalid.

    Returns:
      ``(cand [d, C] int32, valid [d, C] bool)``.

    """
    longest = max([c.size for c in cands] + [1])
    width = 1 << (longest - 1).bit_length() if round_pow2 else longest
    cand = np.zeros((len(cands), width), dtype=np.int32)
    valid = np.zeros((len(cands), width), dtype=bool)
    for j, c in enumerate(cands):
        cand[j, : c.size] = c
        valid[j, : c.size] = True
    return cand, valid


def gcv(rss: float, n_terms: int, n_rows: int, penalty: float) -> float:
    """Earth's GCV: ``rss / (N (1 - C / N)^2)`` with ``C = terms + penalty (terms - 1) / 2``.

    ``(terms - 1) / 2`` is earth's count of knots (one per hinge pair). Infinite when C >= N.
    """
    c = n_terms + penalty * (n_terms - 1) / 2.0
    if c >= n_rows:
        return math.inf
    return rss / (n_rows * (1.0 - c / n_rows) ** 2)


@dataclasses.dataclass
class _Parent:
    """A term that can take children, with its candidate knots (device arrays)."""

    term: Term
    w: jax.Array  # [N] values in forward-pass coordinates
    var_ok: jax.Array  # [d] bool
    cand: jax.Array  # [d, C]
    valid: jax.Array  # [d, C]
    knots: jax.Array  # [d, C] centered, scaled
    knots_raw: np.ndarray  # [d, C] training units
    stats: dict | None = None  # score statistics, kept up to date as columns are added


@dataclasses.dataclass
class ForwardResult:
    """Output of the forward pass.

    Attributes:
      terms: the basis, intercept first, in the order added (dependent columns left out).
      rsq_path: R^2 after each step (step 0 is the intercept alone).
      stop_reason: why the pass stopped, in earth's words.
      minspan: the constant parent's minspan. endspan: the degree-1 endspan.

    """

    terms: list[Term]
    rsq_path: list[float]
    stop_reason: str
    minspan: int
    endspan: int


def forward_pass(
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_terms: int,
    degree: int,
    thresh: float,
    penalty: float,
    minspan: int | None,
    endspan: int | None,
) -> ForwardResult:
    """Greedy MARS forward pass.

    Args:
      x: [N, d] float64 inputs (validated: finite, no constant column).
      y: [N, K] float64 targets.
      max_terms: earth's nk: slots including the intercept; a hinge pair takes two slots even when
        one of its hinges is linearly dependent and left out (as in earth).
      degree: maximum interaction degree (1 or 2).
      thresh: stop when a step raises R^2 by less than this, or when R^2 > 1 - thresh.
      penalty: GCV cost per knot, used to choose between a linear term and a hinge pair.
      minspan: rows between knots; None computes eq. 43 per parent from its support.
      endspan: rows outside the extreme knots; None uses eq. 45 (doubled for interactions).

    Returns:
      A ``ForwardResult``.

    """
    with jax.enable_x64(True):
        return _forward(x, y, max_terms, degree, thresh, penalty, minspan, endspan)


def _forward(x, y, max_terms, degree, thresh, penalty, minspan, endspan):
    n, d = x.shape
    mean = x.mean(0)
    scale = x.std(0)
    xc = (x - mean) / scale
    xt = np.ascontiguousarray(x.T)
    perm_h = np.argsort(xt, axis=1)  # [d, N]; ties need no particular order
    xs_raw_h = np.take_along_axis(xt, perm_h, axis=1)
    xs_h = (xs_raw_h - mean[:, None]) / scale[:, None]
    end1 = default_endspan(d) if endspan is None else endspan
    min1 = default_minspan(n, d) if minspan is None else minspan

    xc_d = jnp.asarray(xc)
    xs = jnp.asarray(xs_h)
    perm = jnp.asarray(perm_h.astype(np.int32))
    yc = jnp.asarray(y - y.mean(0))
    offset = jnp.asarray(mean / scale)
    q = jnp.zeros((n, max_terms)).at[:, 0].set(1.0 / math.sqrt(n))

    def make_parent(term: Term, w_h: np.ndarray, w: jax.Array, interaction: bool) -> _Parent:
        support = w_h != 0
        n_sup = int(support.sum())
        span_end = end1 * (INTERACTION_ENDSPAN_FACTOR if interaction else 1)
        span_min = (default_minspan(n_sup, d) if minspan is None else minspan) if n_sup else 1
        used = term.variables()
        cands = [
            candidate_positions(xs_raw_h[j], support[perm_h[j]], span_min, span_end)
            if j not in used
            else np.zeros(0, np.int64)
            for j in range(d)
        ]
        cand_h, valid_h = pad_candidates(cands, round_pow2=interaction)
        var_ok = np.array([j not in used for j in range(d)])
        return _Parent(
            term=term,
            w=w,
            var_ok=jnp.asarray(var_ok),
            cand=jnp.asarray(cand_h),
            valid=jnp.asarray(valid_h),
            knots=jnp.asarray(np.take_along_axis(xs_h, cand_h, axis=1)),
            knots_raw=np.take_along_axis(xs_raw_h, cand_h, axis=1),
        )

    root_pos = [root_candidates(xs_raw_h[j], min1, end1) for j in range(d)]
    cand_h = np.stack([p for p, _ in root_pos])
    root = _Parent(
        term=INTERCEPT,
        w=jnp.ones(n),
        var_ok=jnp.ones(d, dtype=bool),
        cand=jnp.asarray(cand_h),
        valid=jnp.asarray(np.stack([v for _, v in root_pos])),
        knots=jnp.asarray(np.take_along_axis(xs_h, cand_h, axis=1)),
        knots_raw=np.take_along_axis(xs_raw_h, cand_h, axis=1),
    )
    root.stats = build_root_stats(yc, xs, perm, root.knots, minspan=min1)
    parents = [root]
    terms = [INTERCEPT]
    m = 1
    slots = 1
    qty, rss = project(q, yc)
    tss = float(rss)
    rsq_path = [0.0]
    stop = "reached nk"
    if tss <= 0.0:
        return ForwardResult(terms, rsq_path, "constant response", min1, end1)
    rss = tss
    while slots < max_terms:
        one_slot = slots + 1 == max_terms
        best = None  # (reduction, parent, var, cand index, direction list)
        for par in parents:
            res = jax.device_get(score(par.stats, par.valid, par.var_ok))
            if one_slot:
                red, j, c, sdir = res["single"]
                dirs = [int(sdir)]
                ncols = 1
            else:
                red, j, c, ncols = res["pair"]
                dirs = [HINGE_UP, HINGE_DOWN]
            red = float(red)
            j = int(j)
            lin = float(res["linear"][j]) if np.isfinite(red) else -math.inf
            if np.isfinite(red) and ncols > 0:
                # Prefer the linear term when it is as good by GCV (earth's Auto.linpreds keeps a
                # term linear when its best knot is at the variable's minimum).
                g_hinge = gcv(rss - red, m + int(ncols), n, penalty)
                g_lin = gcv(rss - lin, m + 1, n, penalty)
                if lin > -math.inf and g_lin <= g_hinge:
                    cand_opt = (lin, par, j, -1, [LINEAR])
                else:
                    cand_opt = (red, par, j, int(c), dirs)
            else:
                lin_all = np.asarray(res["linear"])
                if not np.isfinite(lin_all).any():
                    continue
                jl = int(np.argmax(lin_all))
                cand_opt = (float(lin_all[jl]), par, jl, -1, [LINEAR])
            if best is None or cand_opt[0] > best[0]:
                best = cand_opt
        if best is None:
            stop = "no new term increases RSq"
            break
        red, par, j, c, dirs = best
        if red / tss < thresh:
            stop = f"RSq changed by less than {thresh}"
            break
        for direction in dirs:
            knot_c = par.knots[j, c] if c >= 0 else 0.0
            col = hinge_column(par.w, xc_d[:, j], knot_c, direction, offset[j])
            q, ok = append_column(q, col, m)
            if not bool(ok):
                continue
            qcol = q[:, m]
            qty_m = qcol @ yc
            root.stats = add_root_column(
                root.stats, qcol, qty_m, xs, perm, root.knots, minspan=min1
            )
            for other in parents[1:]:
                other.stats = add_parent_column(
                    other.stats, other.w, qcol, qty_m, xs, perm, other.cand, other.knots
                )
            knot = float(par.knots_raw[j, c]) if c >= 0 else math.nan
            term = Term(variable=j, knot=knot, direction=direction, parent=par.term)
            terms.append(term)
            m += 1
            if term.degree < degree:
                child = make_parent(term, np.asarray(col), col, interaction=True)
                child.stats = build_stats(
                    col, q, yc, project(q, yc)[0], xs, perm, child.cand, child.knots
                )
                parents.append(child)
        slots += len(dirs)
        qty, rss_d = project(q, yc)
        rss = float(rss_d)
        rsq_path.append(1.0 - rss / tss)
        if rsq_path[-1] > 1.0 - thresh:
            stop = f"reached RSq above 1 - {thresh}"
            break
    return ForwardResult(terms, rsq_path, stop, min1, end1)
