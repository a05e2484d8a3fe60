"""Score every candidate hinge of a MARS parent from sums over the rows above each knot.

For a parent with (weighted) values ``W`` and a predictor ``x`` (centred), the candidate hinge
at knot ``t`` is ``h = W (x - t)+`` and the candidate linear term is ``l = W x``. Every quantity
earth's ``FindKnot`` needs is a sum over the rows above the knot, so it comes from suffix sums
along the predictor's sorted order, evaluated at the knots only:

* ``hh = |h|^2``, ``hc2 = |h|^2 - (q0 . h)^2`` (the centred sum of squares earth's tolerance uses),
  ``hy = h . y`` and ``lh = l . h``: fixed for the parent, computed once;
* ``U = sum_m (q_m . h)^2``, ``Y = sum_m (q_m . h)(q_m . y)``, ``Lh = sum_m (q_m . h)(q_m . l)``
  over the orthonormal basis columns ``q_m``: the basis only gains columns, so each new column
  adds one term to each sum (``q . h = sum_above W q x - t sum_above W q``): O(p N) per column.

With these, the residual of ``h`` after the basis and the linear term has squared norm
``g - b^2 / Lr`` and correlation ``a - b lr / Lr`` with the residual of ``y`` (``g = hh - U``,
``a = hy - Y``, ``b = lh - Lh``, ``Lr = |l|^2 - LL``, ``lr = l . y - LY``), which is earth's
``temp2`` and ``temp1``; adding the pair ``{l, h}`` lowers the RSS by ``lr^2 / Lr + temp1^2 /
temp2``. All arrays are float64; ``p`` predictors, ``C`` knots per predictor (padded, highest knot
first), ``K`` outputs, ``N`` rows (padded).

The intercept's knots lie on a regular grid, so its sums are block sums of a fixed gather layout
(``spline.candidates_root``). Other parents' knots follow their support; their sums (here) are
segment sums over per-row bin ids.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from spline.orthobasis import QR_TOL_SQ

# earth.c: MIN_BX_SOS, the least residual sum of squares of a candidate linear term (absolute,
# in the units of the data) for it to be tried; a column below it is "not a new form".
MIN_BX_SOS = 0.01
# earth's FindKnot tolerance on temp2 / |h_centred|^2: 0.01 while the new column's index is below
# 15, then 1e-5 (earth 4.4.0 on, to keep small models from having nearby knots).
TOL_EARLY = 0.01
TOL_LATE = 1e-5
TOL_SWITCH_COLUMN = 15
# earth.c ALMOST_ZERO: with weights, a knot must lower the RSS by more than this to count.
ALMOST_ZERO = 1e-10
# Width of the triangular blocks of ``cumsum``: XLA's CPU cumulative sum is ~20x slower than
# block sums plus a small matrix product.
CUMSUM_BLOCK = 32


class Stats(NamedTuple):
    """Candidate statistics of one parent (leading axes may add a pool axis).

    Per knot [p, C] (``Y``, ``hy``: [p, K, C]): ``U``, ``Y``, ``Lh`` (basis sums), ``hh``, ``hc2``,
    ``hy``, ``lh`` (fixed), ``tc`` (centred knot), ``pos`` (sorted position of the knot row, int32),
    ``valid``. Per predictor [p] (``LY``, ``ly``: [p, K]): ``LL``, ``LY`` (basis sums of the
    linear term), ``ll`` (``|l|^2``), ``ly`` (``l . y``).
    """

    U: jax.Array
    Y: jax.Array
    Lh: jax.Array
    hh: jax.Array
    hc2: jax.Array
    hy: jax.Array
    lh: jax.Array
    tc: jax.Array
    pos: jax.Array
    valid: jax.Array
    LL: jax.Array
    LY: jax.Array
    ll: jax.Array
    ly: jax.Array


def cumsum(v: jax.Array) -> jax.Array:
    """Inclusive cumulative sum along the last axis, as block sums and triangular products.

    Exact float64 arithmetic (``precision=HIGHEST``); the summation order differs from a
    sequential sum by rounding only.
    """
    *lead, n = v.shape
    b = min(CUMSUM_BLOCK, max(n, 1))
    nb = -(-n // b)
    blocks = jnp.pad(v, [(0, 0)] * len(lead) + [(0, nb * b - n)]).reshape(*lead, nb, b)
    tri = jnp.triu(jnp.ones((b, b), v.dtype))
    inner = jnp.matmul(blocks, tri, precision=jax.lax.Precision.HIGHEST)
    totals = inner[..., -1]
    if nb > 1:
        offsets = cumsum(totals) - totals
        inner = inner + offsets[..., None]
    return inner.reshape(*lead, nb * b)[..., :n]


def _suffix_from_bins(binned: jax.Array) -> jax.Array:
    """Suffix sums at the knots from per-bin sums [..., C + 1] (bin C collects rows below)."""
    return cumsum(binned[..., :-1])


def _combine(a_x, a_1, tc):
    """``sum_above v (x - t) = sum_above v x - t sum_above v``."""
    return a_x - tc * a_1


def gather(v: jax.Array, idx: jax.Array) -> jax.Array:
    """``v[idx]`` along the first axis for indices known to be in bounds.

    Skipping XLA's bounds handling makes CPU gathers 2-3 times faster.
    """
    return v.at[idx].get(mode="promise_in_bounds")


def _fixed_stats(sx, s1, w2xx, tc, pos, valid, w, yw, xc) -> Stats:
    """A parent's statistics with empty basis sums, from its suffix sums at the knots.

    Args:
      sx, s1: [p, 2 + K, C] ``sum_above`` of ``(w^2, w q0, w y) * x`` and of them alone.
      w2xx: [p, C] ``sum_above w^2 x^2``.
      tc, pos, valid: [p, C] the knots. w: [N] the parent. yw: [N, K]. xc: [p, N].

    """
    hh = w2xx - 2.0 * tc * sx[:, 0] + tc * tc * s1[:, 0]
    qh = _combine(sx[:, 1], s1[:, 1], tc)
    p, c = tc.shape
    k = yw.shape[1]
    wx = w[None, :] * xc
    return Stats(
        U=jnp.zeros((p, c)),
        Y=jnp.zeros((p, k, c)),
        Lh=jnp.zeros((p, c)),
        hh=hh,
        hc2=hh - qh * qh,
        hy=_combine(sx[:, 2:], s1[:, 2:], tc[:, None]),  # [p, K, C]
        lh=w2xx - tc * sx[:, 0],
        tc=tc,
        pos=pos,
        valid=valid,
        LL=jnp.zeros(p),
        LY=jnp.zeros((p, k)),
        ll=jnp.sum(wx * wx, axis=1),
        ly=jnp.einsum("pn,nk->pk", wx, yw, precision=jax.lax.Precision.HIGHEST),
    )


def _accumulate(st: Stats, u: jax.Array, qy: jax.Array, ql: jax.Array) -> Stats:
    """Add new columns' terms: ``u`` [p, n, C] = q . h, ``qy`` [n, K], ``ql`` [p, n] = q . l."""
    hp = jax.lax.Precision.HIGHEST
    return st._replace(
        U=st.U + jnp.einsum("pnc,pnc->pc", u, u, precision=hp),
        Y=st.Y + jnp.einsum("pnc,nk->pkc", u, qy, precision=hp),
        Lh=st.Lh + jnp.einsum("pnc,pn->pc", u, ql, precision=hp),
        LL=st.LL + jnp.sum(ql * ql, -1),
        LY=st.LY + jnp.einsum("pn,nk->pk", ql, qy, precision=hp),
    )


# ---------------------------------------------------------------------------------------------
# Other parents: knots follow the support; sums by per-row bins.


class Grid(NamedTuple):
    """Where one parent's knots are, per predictor: ``bins`` [p, N] (row order) and the knots.

    ``bins[k, r]`` is the number of knots at sorted positions >= the row's position in predictor
    k's order, clipped to C (rows below the lowest kept knot); the sums above knot c are the sums
    over rows with ``bins <= c``.
    """

    bins: jax.Array
    pos: jax.Array
    valid: jax.Array
    tc: jax.Array


def parent_grid(
    w: jax.Array,
    xs: jax.Array,
    perm: jax.Array,
    nxt: jax.Array,
    n_rows: ArrayLike,
    end: ArrayLike,
    span: ArrayLike,
    start: ArrayLike,
    n_cand: int,
    weighted: bool,
) -> Grid:
    """Knots of a parent ``w`` [N] on every predictor (earth's FindKnot walk, vectorized).

    A sorted position ``i`` in ``[end, N - 2]`` qualifies when the row above it has ``w > 0`` and
    (without weights) the hinge is not identically zero (a row above with ``w != 0`` and a larger
    ``x``). Counting qualifying positions from the top, knots sit at counts ``start``,
    ``start + span``, ...

    Args:
      w: [N] parent values (zero on padding rows).
      xs: [p, N] sorted centred predictors.
      perm: [p, N] sorting permutations (padding rows last).
      nxt: [p, N] int32, for each sorted position the first position with a larger value.
      n_rows: N real rows (traced).
      end, span, start: the spans in force (traced int32).
      n_cand: C, static.
      weighted: whether case weights are used (earth's weighted walk skips the zero-hinge check).

    """
    npad = xs.shape[1]
    pos = jnp.arange(npad)

    def one(xs_k, perm_k, nxt_k):
        ws = gather(w, perm_k)
        above = jnp.concatenate([ws[1:], jnp.zeros(1, ws.dtype)])
        qual = (pos >= end) & (pos <= n_rows - 2) & (above > 0)
        if not weighted:
            last_nz = jnp.max(jnp.where(ws != 0, pos, -1))
            qual = qual & (last_nz >= nxt_k)
        qi = qual.astype(xs.dtype)
        count = jnp.flip(cumsum(jnp.flip(qi))).astype(jnp.int32)  # qualifying at >= pos
        n_at_or_above = jnp.where(count >= start, (count - start) // span + 1, 0)
        knot = qual & (count >= start) & ((count - start) % span == 0)
        c = jnp.where(knot, (count - start) // span, n_cand)
        cand = jnp.zeros(n_cand, jnp.int32).at[c].set(pos.astype(jnp.int32), mode="drop")
        n_knots = jnp.minimum(jnp.max(n_at_or_above), n_cand)
        bins_sorted = jnp.minimum(n_at_or_above, n_cand).astype(jnp.int32)
        bins = jnp.zeros(npad, jnp.int32).at[perm_k].set(bins_sorted)
        valid = jnp.arange(n_cand) < n_knots
        return bins, cand, valid, xs_k[cand]

    bins, cand, valid, tc = jax.vmap(one)(xs, perm, nxt)
    return Grid(bins=bins, pos=cand, valid=valid, tc=tc)


def _grid_suffix(grid: Grid, v, xc, n_cand: int):
    """``(sum_above v x, sum_above v)`` at the knots, each [p, n, C]; ``v`` [N, n] row values."""
    p = xc.shape[0]
    both = jnp.concatenate(
        [v[None] * xc[..., None], jnp.broadcast_to(v[None], (p,) + v.shape)], axis=-1
    )  # [p, N, 2n]
    flat = (grid.bins + (n_cand + 1) * jnp.arange(p)[:, None]).reshape(-1)
    binned = jax.ops.segment_sum(
        both.reshape(-1, both.shape[-1]),
        flat,
        num_segments=p * (n_cand + 1),
        mode="promise_in_bounds",
    ).reshape(p, n_cand + 1, -1)
    suffix = _suffix_from_bins(jnp.moveaxis(binned, 1, -1))  # [p, 2n, C]
    n = v.shape[-1]
    return suffix[:, :n], suffix[:, n:]


def parent_stats(
    grid: Grid, w: jax.Array, yw: jax.Array, q0: jax.Array, xc: jax.Array, n_cand: int
) -> Stats:
    """A parent's fixed statistics, basis sums empty (add the basis with ``add_columns``).

    Args:
      grid: the parent's knots. w: [N] its weighted values. yw: [N, K] weighted targets.
      q0: [N] the normalized intercept. xc: [p, N] centred predictors. n_cand: C.

    """
    fixed = jnp.concatenate([(w * w)[:, None], (w * q0)[:, None], w[:, None] * yw], axis=1)
    sx, s1 = _grid_suffix(grid, fixed, xc, n_cand)  # [p, 2 + K, C]
    w2xx = _grid_suffix_xx(grid, w * w, xc, n_cand)
    return _fixed_stats(sx, s1, w2xx, grid.tc, grid.pos, grid.valid, w, yw, xc)


def _grid_suffix_xx(grid: Grid, v, xc, n_cand: int):
    """``sum_above v x^2`` [p, C] for row values ``v`` [N]."""
    p = xc.shape[0]
    flat = (grid.bins + (n_cand + 1) * jnp.arange(p)[:, None]).reshape(-1)
    binned = jax.ops.segment_sum(
        (v[None] * xc * xc).reshape(-1),
        flat,
        num_segments=p * (n_cand + 1),
        mode="promise_in_bounds",
    ).reshape(p, n_cand + 1)
    return _suffix_from_bins(binned)


def add_columns(
    grid: Grid, st: Stats, w: jax.Array, xc: jax.Array, q: jax.Array, qy: jax.Array, n_cand: int
) -> Stats:
    """Adds basis columns ``q`` [n, N] (rows; ``qy`` [n, K]) to a parent's sums: O(p N n)."""
    v = w[None, :] * q
    sx, s1 = _grid_suffix(grid, v.T, xc, n_cand)
    u = _combine(sx, s1, grid.tc[:, None])  # [p, n, C]
    ql = jnp.einsum("pr,nr->pn", xc, v, precision=jax.lax.Precision.HIGHEST)
    return _accumulate(st, u, qy, ql)


# ---------------------------------------------------------------------------------------------
# Scoring.


class Scores(NamedTuple):
    """Per predictor [p]: the outcome of earth's FindPredGivenParent for one parent.

    ``lin``: RSS drop of the linear term (0 when it is not a new form); ``new_form``: whether the
    linear term was usable (earth may clear the flag); ``knot``: best knot's RSS drop (pair, or
    linear plus hinge), ``-inf`` when no knot beats the linear term; ``knot_index``: its index
    into C; ``best``: ``max(lin, knot)``, earth's RssDeltaForParPredPair.
    """

    lin: jax.Array
    new_form: jax.Array
    knot: jax.Array
    knot_index: jax.Array
    best: jax.Array


def score(
    st: Stats,
    new_form: jax.Array,
    allowed: jax.Array,
    n_terms: ArrayLike,
    max_legal: ArrayLike,
    tol: ArrayLike,
    weighted: bool,
) -> Scores:
    """Score every knot and linear term of one parent as earth 5.3.2 does.

    Args:
      st: the parent's statistics (basis sums up to date).
      new_form: [p] earth's GetNewFormFlag per predictor.
      allowed: [p] predictors not already in the parent.
      n_terms: index of the next term slot (earth's nTerms).
      max_legal: earth's MaxLegalRssDelta (unweighted only).
      tol: collinearity tolerance override (<= 0: earth's 0.01 / 1e-5 rule).
      weighted: earth's weighted path (regression RSS, no tolerance, no legality check).

    """
    lr_sq = st.ll - st.LL  # residual SS of the linear term
    lr = st.ly - st.LY  # [p, K]
    if weighted:
        nf = new_form
        lin_in = nf & (lr_sq > QR_TOL_SQ * st.ll)
    else:
        nf = new_form & (lr_sq > MIN_BX_SOS)
        lin_in = nf
    safe_lr = jnp.where(lin_in, lr_sq, 1.0)
    lin = jnp.where(lin_in, jnp.sum(lr * lr, -1) / safe_lr, 0.0)
    g = st.hh - st.U
    a = st.hy - st.Y  # [p, K, C]
    b = st.lh - st.Lh
    coef = jnp.where(lin_in, 1.0 / safe_lr, 0.0)[:, None]
    temp2 = g - b * b * coef
    temp1 = a - (b * coef)[:, None, :] * lr[:, :, None]
    ok_cand = st.valid & allowed[:, None]
    if weighted:
        indep = temp2 > QR_TOL_SQ * st.hh
        red = jnp.where(indep, jnp.sum(temp1 * temp1, 1) / jnp.where(indep, temp2, 1.0), 0.0)
        cand = jnp.where(ok_cand & (red > ALMOST_ZERO), red, -jnp.inf)
        c = jnp.argmax(cand, axis=1)
        top = jnp.take_along_axis(cand, c[:, None], 1)[:, 0]
        found = top > -jnp.inf
        knot = jnp.where(found, lin + top, -jnp.inf)
        best = jnp.where(found, knot, lin)
    else:
        new_col = n_terms + nf.astype(jnp.int32)
        auto = jnp.where(new_col < TOL_SWITCH_COLUMN, TOL_EARLY, TOL_LATE)
        tol_p = jnp.where(tol > 0, tol, auto)[:, None]
        good = temp2 > tol_p * st.hc2
        hinge = jnp.where(good, jnp.sum(temp1 * temp1, 1) / jnp.where(good, temp2, 1.0), 0.0)
        total = lin[:, None] + hinge
        cand = jnp.where(ok_cand & (total > lin[:, None]) & (total < max_legal), total, -jnp.inf)
        c = jnp.argmax(cand, axis=1)
        knot = jnp.take_along_axis(cand, c[:, None], 1)[:, 0]
        best = jnp.maximum(lin, knot)
    return Scores(lin=lin, new_form=nf, knot=knot, knot_index=c, best=best)
