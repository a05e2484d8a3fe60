"""MARS forward pass: earth 5.3.2's term search as one jitted loop that stays on the device.

Each step (earth's ``FindTerm``):

1. takes the ``fast_k`` best parents from earth's Fast MARS queue (``spline.fastk``);
2. scores every knot and linear term of those parents on every predictor in one batched
   computation (``spline.candidates``): the intercept's sums are kept up to date as columns are
   added; other parents live in a pool of statistics, built when first selected and brought up
   to date with the columns they missed whenever they are selected again;
3. picks the term earth picks (same order, strict improvements, the legal-RSS-delta check, the
   collinearity tolerance, linear terms when no knot beats them, ``new form`` rules);
4. appends the term pair to the orthonormal basis (block Gram-Schmidt in float64) and records the
   projections (the triangular factor used by the pruning pass);
5. applies earth's stopping rules (``thresh``, ``GRSq < -10``, RSq, ``nk``).

Term slots follow earth: a step fills slots ``t`` and ``t + 1`` even when it adds one term, so
``nk`` counts slots. Everything runs in float64 with ``Precision.HIGHEST`` products, so the
result does not depend on the backend. Shapes are static per ``Static`` (rows and knots padded to
buckets), so similar problem sizes share one compilation.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from spline import candidates as cand
from spline import fastk, orthobasis, spans
from spline.candidates import Stats

HP = jax.lax.Precision.HIGHEST
# earth.c: MIN_GRSQ (the forward pass stops when GRSq drops below it, thresh > 0 only).
MIN_GRSQ = -10.0
# earth.c: GRSq below this is reported as "-Inf".
GRSQ_INF = -1000.0
# earth.c: MaxLegalRssDelta = min(1.01 Rss, 10 * previous RssDelta) (earth 4.2.0 on).
LEGAL_RSS_FACTOR = 1.01
LEGAL_DELTA_FACTOR = 10.0
# earth.c: MaybeZero, RSS and RSq changes closer to zero than this are zero.
ALMOST_ZERO = 1e-10
# earth.c: degree given to an unused upper slot so it is never a parent (MAX_DEGREE + 1).
UNUSABLE_DEGREE = 101
# Direction codes as in earth's dirs matrix.
DIR_UP, DIR_DOWN, DIR_LINEAR = 1, -1, 2
# earth's ForwardEpilog termination codes.
TERMINATION = {
    1: "Reached maximum number of terms (nk < 3)",
    2: "GRSq -Inf",
    3: "Reached minimum GRSq -10",
    4: "RSq changed by less than thresh",
    5: "Reached maximum RSq 1 - thresh",
    6: "No new term increases RSq",
    7: "Reached nk",
}


@dataclasses.dataclass(frozen=True)
class Static:
    """Shapes and switches fixed for one compilation.

    Attributes:
      n_pad: rows, padded (at least one padding row).
      n_vars: predictors, padded with constant columns (never used).
      n_out: K.
      n_slots: M >= nk term slots (a multiple of ``row_block``, the rows per basis block).
      n_cand_root: knots per predictor of the intercept (padded). root_block: rows per block of
        its gather layout (its minspan, padded). root_top: rows above its highest knot (padded).
      n_cand_pool: knots per predictor of other parents (padded). pool_size: parents kept.
      fast_k: parents scored per step. max_degree: earth's degree.
      weighted: earth's weighted search.

    """

    n_pad: int
    n_vars: int
    n_out: int
    n_slots: int
    row_block: int
    n_cand_root: int
    root_block: int
    root_top: int
    n_cand_pool: int
    pool_size: int
    fast_k: int
    max_degree: int
    weighted: bool


@flax.struct.dataclass
class Data:
    """Training data on the device (row axis padded to ``n_pad``; padding rows have weight 0).

    ``xt`` [p, N] raw predictors, ``xc`` [p, N] centred, ``perm`` [p, N] sort orders (padding
    last), ``xs`` [p, N] sorted centred, ``nxt`` [p, N] first sorted position with a larger value,
    ``sw`` [N] square roots of the weights, ``yw`` [N, K] weighted scaled targets, ``q0`` [N] the
    normalized intercept, ``root`` the intercept's knot layout.
    """

    xt: jax.Array
    xc: jax.Array
    perm: jax.Array
    xs: jax.Array
    nxt: jax.Array
    sw: jax.Array
    yw: jax.Array
    q0: jax.Array
    root: cand.RootLayout


@flax.struct.dataclass
class Params:
    """Scalars that vary without recompiling: ``n_rows`` real N, ``n_vars`` real p, ``nk``,
    ``thresh``, ``penalty``, ``fast_beta``, ``tol`` (collinearity override, <= 0 for earth's
    rule), ``rss_null``, ``endspan`` of interaction terms and the user's ``minspan``.
    """

    n_rows: jax.Array
    n_vars: jax.Array
    nk: jax.Array
    thresh: jax.Array
    penalty: jax.Array
    fast_beta: jax.Array
    tol: jax.Array
    rss_null: jax.Array
    endspan: jax.Array
    minspan: jax.Array


@flax.struct.dataclass
class Terms:
    """Earth's term slots [M]: predictor, knot (sorted position and raw value), direction
    (``DIR_*``), parent slot, degree, ``used`` (earth's FullSet) and the predictors of each term
    [M, p].
    """

    var: jax.Array
    pos: jax.Array
    cut: jax.Array
    dirn: jax.Array
    parent: jax.Array
    degree: jax.Array
    used: jax.Array
    varmask: jax.Array


@flax.struct.dataclass
class Pool:
    """Statistics of non-intercept parents: ``stats`` and ``grid`` with a leading [S] axis,
    ``w`` [S, N] the parents' weighted values, ``pid`` [S] the slot held (-1 empty), ``age`` [S]
    the last step each was scored, ``done`` [S] the basis rows its sums include.
    """

    stats: Stats
    grid: cand.Grid
    w: jax.Array
    pid: jax.Array
    age: jax.Array
    done: jax.Array


@flax.struct.dataclass
class State:
    """The forward pass between steps.

    ``q`` the orthonormal basis (``orthobasis``: M rows of length N, one per slot), ``r`` [M, M]
    the projections of the slots' columns (upper
    triangular: column t holds ``q^T b_t`` and ``|residual|``), ``qy`` [M, K] ``q^T y``; the
    term slots; earth's counters (``n_terms`` next slot, ``n_used`` terms for the GCV, ``rss``,
    ``rss_delta`` of the last step, ``rsq``, ``rsq_delta``, ``grsq``, ``no_term``); the queue; the
    intercept's statistics and the pool; with weights, ``q_earth`` earth's own orthogonal
    basis (constant first column, terms only), which decides whether an upper term is kept.
    """

    q: orthobasis.Rows
    r: jax.Array
    qy: jax.Array
    terms: Terms
    n_terms: jax.Array
    n_used: jax.Array
    rss: jax.Array
    rss_delta: jax.Array
    rsq: jax.Array
    rsq_delta: jax.Array
    grsq: jax.Array
    no_term: jax.Array
    stop: jax.Array
    step: jax.Array
    queue: fastk.Queue
    root: Stats
    pool: Pool | None
    q_earth: orthobasis.Rows | None = None


def gcv(
    rss: ArrayLike, n_terms: ArrayLike, n_rows: ArrayLike, penalty: ArrayLike, xp=math
) -> ArrayLike:
    """Earth's GCV: ``rss / (N (1 - C / N)^2)``, ``C = terms + penalty (terms - 1) / 2``.

    Infinite once ``C >= N``; ``penalty == -1`` makes terms and knots free (``C = 0``).
    """
    if xp is math:
        cost = 0.0 if penalty == -1 else (n_terms + penalty * (n_terms - 1) / 2.0) / n_rows
        return math.inf if cost >= 1 else rss / (n_rows * (1.0 - cost) ** 2)
    cost = jnp.where(penalty == -1, 0.0, (n_terms + penalty * (n_terms - 1) / 2.0) / n_rows)
    return jnp.where(cost >= 1, jnp.inf, rss / (n_rows * (1.0 - cost) ** 2))


def _maybe_zero(v):
    return jnp.where(jnp.abs(v) < ALMOST_ZERO, 0.0, v)


# ---------------------------------------------------------------------------------------------
# Basis columns.


def term_values(data: Data, terms: Terms, slot: ArrayLike, max_degree: int) -> jax.Array:
    """Weighted values [N] of the term in ``slot``: ``sw`` times its factors (raw units)."""
    w = data.sw
    cur = slot
    for _ in range(max_degree):
        active = cur > 0
        xr = data.xt[terms.var[cur]]
        d = terms.dirn[cur]
        f = jnp.where(d == DIR_LINEAR, xr, jnp.maximum(0.0, d * (xr - terms.cut[cur])))
        w = jnp.where(active, w * f, w)
        cur = jnp.where(active, terms.parent[cur], 0)
    return w


def _new_form(terms: Terms, parent, n_terms) -> jax.Array:
    """Earth's GetNewFormFlag for ``parent`` and every predictor [p].

    False only when every used term (intercept excluded) has exactly the parent's predictors
    plus this one, so the linear term would repeat a form already in the model.
    """
    m = terms.varmask.shape[0]
    live = terms.used & (jnp.arange(m) >= 1) & (jnp.arange(m) < n_terms)
    pm = terms.varmask[parent]
    diff = terms.varmask != pm[None, :]  # [M, p]
    match = (jnp.sum(diff, 1) == 1)[:, None] & diff & ~pm[None, :]
    all_match = jnp.all(match | ~live[:, None], axis=0)
    return ~(jnp.any(live) & all_match)


# ---------------------------------------------------------------------------------------------
# One step.


def _ensure_pool(st: Static, data: Data, params: Params, state: State, sel, usable):
    """Brings the selected parents' pool statistics up to date.

    A parent not in the pool gets the least recently scored slot that no selected parent holds
    and its fixed sums; every selected parent then adds the basis rows it has not seen yet
    (O(p N) per row, so O(p N m) to build a parent). Parents that are not selected are left
    alone until they are. The slots are
    assigned first on small arrays; the work then runs in loops that update the pool in place
    (a conditional around the pool would copy it).
    """
    pool = state.pool
    t = state.n_terms
    need = usable & (sel != 0)
    big = jnp.iinfo(jnp.int32).max

    def assign(f, carry):
        pid, age, slot, build = carry
        here = pid == sel[f]
        present = jnp.any(here)
        taken = jnp.any((pid[:, None] == sel[None, :]) & need[None, :], axis=1)
        victim = jnp.argmin(jnp.where(taken, big, age))
        s = jnp.where(present, jnp.argmax(here), victim).astype(jnp.int32)
        new = need[f] & ~present
        pid = jnp.where(new, pid.at[s].set(sel[f]), pid)
        age = jnp.where(need[f], age.at[s].set(state.step), age)
        return pid, age, slot.at[f].set(s), build.at[f].set(new)

    f_all = sel.shape[0]
    pid, age, slot, build = jax.lax.fori_loop(
        0, f_all, assign, (pool.pid, pool.age, jnp.zeros(f_all, jnp.int32), jnp.zeros(f_all, bool))
    )
    pool = pool.replace(pid=pid, age=age)

    def build_one(i, pool):
        f = jnp.nonzero(build, size=f_all, fill_value=0)[0][i]
        s, parent = slot[f], sel[f]
        w = term_values(data, state.terms, parent, st.max_degree)
        n_used = jnp.sum(w > 0)
        # Children of a pooled parent have degree >= 2: one endspan for all of them.
        end = params.endspan
        span = spans.minspan_device(params.n_rows, n_used, params.n_vars, params.minspan)
        start = spans.startspan_device(params.n_rows, end, span, params.minspan)
        grid = cand.parent_grid(
            w,
            data.xs,
            data.perm,
            data.nxt,
            params.n_rows,
            end,
            span,
            start,
            st.n_cand_pool,
            st.weighted,
        )
        stats = cand.parent_stats(grid, w, data.yw, data.q0, data.xc, st.n_cand_pool)
        # The intercept's row alone, then the basis rows in step pairs by ``catch_up``.
        stats = cand.add_columns(
            grid, stats, w, data.xc, data.q0[None], state.qy[:1], st.n_cand_pool
        )
        put = functools.partial(jax.tree.map, lambda a, v: a.at[s].set(v))
        return pool.replace(
            stats=put(pool.stats, stats),
            grid=put(pool.grid, grid),
            w=pool.w.at[s].set(w),
            done=pool.done.at[s].set(1),
        )

    pool = jax.lax.fori_loop(0, jnp.sum(build), build_one, pool)
    behind = need
    behind_slots = jnp.where(behind, slot, 0)

    def catch_up(i, pool):
        s = behind_slots[jnp.nonzero(behind, size=f_all, fill_value=0)[0][i]]
        grid = jax.tree.map(lambda a: a[s], pool.grid)
        w = pool.w[s]

        def one(carry):
            stats, done = carry
            rows = orthobasis.get_rows(state.q, done, 2)
            qy = jax.lax.dynamic_slice_in_dim(state.qy, done, 2, axis=0)
            return cand.add_columns(grid, stats, w, data.xc, rows, qy, st.n_cand_pool), done + 2

        # Rows come in step pairs: ``done`` and ``t`` are both odd.
        stats, done = jax.lax.while_loop(
            lambda c: c[1] < t, one, (jax.tree.map(lambda a: a[s], pool.stats), pool.done[s])
        )
        put = functools.partial(jax.tree.map, lambda a, v: a.at[s].set(v))
        return pool.replace(stats=put(pool.stats, stats), done=pool.done.at[s].set(done))

    return jax.lax.fori_loop(0, jnp.sum(behind), catch_up, pool)


def _score_selected(st: Static, params: Params, state: State, sel, usable, max_legal):
    """Scores of every selected parent, [F, p] per field of ``candidates.Scores``."""
    n_terms = state.n_terms
    terms = state.terms

    def scores_for(stats, pid):
        nf = _new_form(terms, pid, n_terms)
        allowed = ~terms.varmask[pid]
        return cand.score(stats, nf, allowed, n_terms, max_legal, params.tol, st.weighted), nf

    root_sc, root_nf = scores_for(state.root, jnp.int32(0))
    if state.pool is None:
        out = jax.tree.map(lambda a: jnp.broadcast_to(a, (sel.shape[0],) + a.shape), root_sc)
        nf0 = jnp.broadcast_to(root_nf, (sel.shape[0],) + root_nf.shape)
    else:
        pool = state.pool
        pool_sc, pool_nf = jax.lax.map(lambda a: scores_for(*a), (pool.stats, pool.pid))
        slot = jnp.argmax(pool.pid[None, :] == sel[:, None], axis=1)
        is_root = sel == 0
        pick = functools.partial(_pick, is_root, slot)
        out = jax.tree.map(pick, root_sc, pool_sc)
        nf0 = pick(root_nf, pool_nf)
    allowed = ~terms.varmask[sel] & usable[:, None]
    return out, nf0, allowed


def _pick(is_root, slot, root_value, pool_values):
    chosen = pool_values[slot]
    mask = is_root.reshape(is_root.shape + (1,) * (chosen.ndim - 1))
    return jnp.where(mask, root_value[None], chosen)


def _choose(st: Static, sc: cand.Scores, new_form0, allowed):
    """Earth's sequential choice: parents in queue order, predictors ascending, linear then knot.

    Returns ``(delta, found, f, j, is_linear)`` and the per-parent best RSS drop for the queue.
    """
    neg = -jnp.inf
    if st.weighted:
        lin_entry = jnp.full(sc.best.shape, neg)
        knot_entry = jnp.where(allowed, sc.best, neg)
    else:
        lin_entry = jnp.where(allowed & new_form0, sc.lin, neg)
        knot_entry = jnp.where(allowed, sc.knot, neg)
    entries = jnp.stack([lin_entry, knot_entry], -1)  # [F, p, 2]
    flat = jnp.argmax(entries.reshape(-1))
    delta = entries.reshape(-1)[flat]
    f, j, kind = jnp.unravel_index(flat, entries.shape)
    found = delta > 0
    is_linear = (kind == 0) | (st.weighted & ~jnp.isfinite(sc.knot[f, j]))
    best_parent = jnp.max(jnp.where(allowed, sc.best, -1.0), axis=1)
    best_parent = jnp.maximum(best_parent, -1.0)
    return delta, found, f, j, is_linear, best_parent


def _add_terms(st: Static, data: Data, state: State, pid, j, knot_pos, is_linear, new_form):
    """Fills slots ``t``, ``t + 1`` (earth's AddTermPair) and extends the bases.

    The upper slot is a term (earth's FullSet) when the step adds a hinge pair. Without weights
    the scoring basis holds exactly those terms. With weights earth's regressions use every
    column below ``nTerms``, so the lower hinge of a knot step joins the scoring basis even when
    it is not a term; and earth drops the upper term when its residual against its own
    orthogonal basis (constant first column, terms only) has a sum of squares <= MIN_BX_SOS.
    """
    terms = state.terms
    t = state.n_terms
    xr = data.xt[j]
    cut = xr[data.perm[j, knot_pos]]
    w = term_values(data, terms, pid, st.max_degree)
    up = jnp.where(is_linear, xr, jnp.maximum(0.0, xr - cut))
    down = jnp.maximum(0.0, cut - xr)
    b = w[None, :] * jnp.stack([up, down])
    pair = ~is_linear & new_form
    in_basis = ~is_linear if st.weighted else pair
    b = b.at[1].multiply(in_basis.astype(b.dtype))
    q, qnew, rcol = orthobasis.extend(state.q, b, t)
    r = jax.lax.dynamic_update_slice_in_dim(state.r, rcol, t, axis=1)
    qy_new = jnp.matmul(qnew, data.yw, precision=HP)
    qy = jax.lax.dynamic_update_slice_in_dim(state.qy, qy_new, t, axis=0)
    q_earth = state.q_earth
    if st.weighted:
        q_earth, enew, ercol = orthobasis.extend(q_earth, b, t, exact=True)
        used2 = pair & (ercol[t + 1, 1] ** 2 > cand.MIN_BX_SOS)
        q_earth = orthobasis.set_row(q_earth, t + 1, enew[1] * used2)
    else:
        used2 = pair
    deg = terms.degree[pid] + 1
    mask = terms.varmask[pid].at[j].set(True)
    slots = jnp.stack([t, t + 1])
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    new_terms = Terms(
        var=terms.var.at[slots].set(i32(j)),
        pos=terms.pos.at[slots].set(i32(knot_pos)),
        cut=terms.cut.at[slots].set(cut),
        dirn=terms.dirn.at[slots].set(
            i32(jnp.stack([jnp.where(is_linear, DIR_LINEAR, DIR_UP), DIR_DOWN]))
        ),
        parent=terms.parent.at[slots].set(i32(pid)),
        degree=terms.degree.at[slots].set(
            i32(jnp.stack([deg, jnp.where(used2, deg, UNUSABLE_DEGREE)]))
        ),
        used=terms.used.at[slots].set(jnp.stack([True, used2])),
        varmask=terms.varmask.at[slots].set(mask),
    )
    state = state.replace(q=q, r=r, qy=qy, terms=new_terms, q_earth=q_earth)
    return state, qnew, qy_new, used2


def _step(st: Static, data: Data, params: Params, state: State) -> State:
    """One forward step (earth's FindTerm, AddTermPair and the loop's bookkeeping)."""
    max_legal = jnp.minimum(LEGAL_RSS_FACTOR * state.rss, LEGAL_DELTA_FACTOR * state.rss_delta)
    sel, valid = fastk.select(state.queue, st.fast_k)
    usable = valid & (state.terms.degree[sel] < st.max_degree)
    if state.pool is not None:
        state = state.replace(pool=_ensure_pool(st, data, params, state, sel, usable))
    sc, nf0, allowed = _score_selected(st, params, state, sel, usable, max_legal)
    delta, found, f, j, is_linear, best_parent = _choose(st, sc, nf0, allowed)
    queue = fastk.update(state.queue, sel, usable, best_parent, state.n_terms)
    pid = sel[f]
    if state.pool is None:
        knot_pos = state.root.pos[j, sc.knot_index[f, j]]
    else:
        slot = jnp.argmax(state.pool.pid == pid)
        knot_pos = jnp.where(
            pid == 0,
            state.root.pos[j, sc.knot_index[f, j]],
            state.pool.stats.pos[slot, j, sc.knot_index[f, j]],
        )
    knot_pos = jnp.where(is_linear, 0, knot_pos)
    # Without a winner the step still runs on a dummy term (no branch copies the large state);
    # its slots are then marked unused and the loop stops.
    state, qnew, qy_new, pair = _add_terms(
        st, data, state.replace(queue=queue), pid, j, knot_pos, is_linear, sc.new_form[f, j]
    )
    pair = found & pair
    delta = jnp.where(found, delta, 0.0)
    n_used = state.n_used + 1 + pair.astype(jnp.int32)
    rss = _maybe_zero(state.rss - delta)
    g = gcv(rss, n_used, params.n_rows, params.penalty, xp=jnp)
    g_null = gcv(params.rss_null, 1, params.n_rows, params.penalty, xp=jnp)
    rsq = 1.0 - rss / params.rss_null
    rsq_delta = _maybe_zero(rsq - state.rsq)
    grsq = 1.0 - g / g_null
    checks = params.thresh != 0
    keep = found & ~(checks & ((rsq_delta < params.thresh) | (grsq < MIN_GRSQ)))
    t = state.n_terms
    used = state.terms.used
    used = jnp.where(keep, used, used.at[t].set(False).at[t + 1].set(False))
    queue = jax.lax.cond(
        keep, lambda q: fastk.add(q, t, pair, params.fast_beta), lambda q: q, state.queue
    )
    n_terms = jnp.where(keep, t + 2, t)
    stop = ~keep | (rsq >= 1.0 - params.thresh) | (n_terms >= params.nk - 1)
    state = state.replace(
        terms=state.terms.replace(used=used),
        queue=queue,
        n_terms=n_terms,
        n_used=n_used,
        rss=rss,
        rss_delta=delta,
        rsq=rsq,
        rsq_delta=rsq_delta,
        grsq=grsq,
        no_term=~found,
        stop=stop,
        step=state.step + 1,
    )
    return _add_to_stats(st, data, state, qnew, qy_new)


def _add_to_stats(st: Static, data: Data, state: State, qnew, qy_new) -> State:
    """Adds the step's new columns to the intercept's sums (pooled parents catch up lazily)."""
    root = cand.root_add_columns(data.root, state.root, data.sw, data.xc, qnew, qy_new)
    return state.replace(root=root)


# ---------------------------------------------------------------------------------------------
# Set-up and the loop.


def _initial_state(st: Static, data: Data, params: Params) -> State:
    m, npad, p, k = st.n_slots, st.n_pad, st.n_vars, st.n_out
    q = orthobasis.set_row(orthobasis.zeros(m, npad, st.row_block), 0, data.q0)
    qy0 = jnp.matmul(data.q0, data.yw, precision=HP)
    r = jnp.zeros((m, m)).at[0, 0].set(jnp.sqrt(jnp.sum(data.sw * data.sw)))
    terms = Terms(
        var=jnp.zeros(m, jnp.int32),
        pos=jnp.zeros(m, jnp.int32),
        cut=jnp.zeros(m),
        dirn=jnp.zeros(m, jnp.int32),
        parent=jnp.full(m, -1, jnp.int32),
        degree=jnp.zeros(m, jnp.int32),
        used=jnp.zeros(m, bool).at[0].set(True),
        varmask=jnp.zeros((m, p), bool),
    )
    root = cand.root_stats(data.root, data.sw, data.yw, data.q0, data.xc)
    root = cand.root_add_columns(data.root, root, data.sw, data.xc, data.q0[None, :], qy0[None, :])
    pool = None
    if st.max_degree > 1:
        s, c = st.pool_size, st.n_cand_pool
        stats = Stats(
            U=jnp.zeros((s, p, c)),
            Y=jnp.zeros((s, p, k, c)),
            Lh=jnp.zeros((s, p, c)),
            hh=jnp.zeros((s, p, c)),
            hc2=jnp.zeros((s, p, c)),
            hy=jnp.zeros((s, p, k, c)),
            lh=jnp.zeros((s, p, c)),
            tc=jnp.zeros((s, p, c)),
            pos=jnp.zeros((s, p, c), jnp.int32),
            valid=jnp.zeros((s, p, c), bool),
            LL=jnp.zeros((s, p)),
            LY=jnp.zeros((s, p, k)),
            ll=jnp.zeros((s, p)),
            ly=jnp.zeros((s, p, k)),
        )
        grid = cand.Grid(
            bins=jnp.full((s, p, npad), c, jnp.int32),
            pos=jnp.zeros((s, p, c), jnp.int32),
            valid=jnp.zeros((s, p, c), bool),
            tc=jnp.zeros((s, p, c)),
        )
        pool = Pool(
            stats=stats,
            grid=grid,
            w=jnp.zeros((s, npad)),
            pid=jnp.full(s, -1, jnp.int32),
            age=jnp.full(s, -1, jnp.int32),
            done=jnp.zeros(s, jnp.int32),
        )
    state = State(
        q=q,
        r=r,
        qy=jnp.zeros((m, k)).at[0].set(qy0),
        terms=terms,
        n_terms=jnp.int32(1),
        n_used=jnp.int32(1),
        rss=params.rss_null,
        rss_delta=params.rss_null,
        rsq=jnp.float64(0.0),
        rsq_delta=jnp.float64(0.0),
        grsq=jnp.float64(0.0),
        no_term=jnp.bool_(False),
        stop=params.nk < 3,
        step=jnp.int32(0),
        queue=fastk.init(m, params.rss_null),
        root=root,
        pool=pool,
    )
    if st.weighted:
        ones = (data.sw > 0).astype(data.sw.dtype)
        first = ones / jnp.sqrt(jnp.sum(ones))
        state = state.replace(
            q_earth=orthobasis.set_row(orthobasis.zeros(m, npad, st.row_block), 0, first)
        )
    return state


@functools.partial(jax.jit, static_argnums=0)
def run(st: Static, data: Data, params: Params) -> State:
    """The whole forward pass on the device: a ``while_loop`` over earth's steps."""
    with jax.default_matmul_precision("highest"):
        state = _initial_state(st, data, params)
        return jax.lax.while_loop(
            lambda s: ~s.stop, functools.partial(_step, st, data, params), state
        )


# Compiled forward passes by their static shapes. Small problems are compile-bound: XLA's
# backend optimization level 0 halves their compile time (degree 2: 14 s -> 7 s measured) for a
# negligible run time; larger ones keep the default (level 0 runs N = 1e5 40% slower).
_COMPILED: dict = {}
FAST_COMPILE = {"xla_backend_optimization_level": 0}


# JAX's persistent compilation cache, used unless the user set one or opted out with
# SPLINE_COMPILATION_CACHE=0 (a path there chooses the directory).
CACHE_ENV = "SPLINE_COMPILATION_CACHE"


def _use_compilation_cache() -> None:
    """Points JAX's persistent cache at ``~/.cache/spline_mars/jax`` if nothing is configured."""
    choice = os.environ.get(CACHE_ENV, "")
    if choice == "0" or jax.config.jax_compilation_cache_dir:
        return
    default = os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "spline_mars", "jax"
    )
    jax.config.update("jax_compilation_cache_dir", choice or default)


def compiled(st: Static, data: Data, params: Params) -> jax.stages.Compiled:
    """The compiled ``run`` for these shapes (compiling it on first use)."""
    if st not in _COMPILED:
        _use_compilation_cache()
        small = st.n_pad * st.n_vars <= 2 * SMALL_CELLS
        _COMPILED[st] = run.lower(st, data, params).compile(
            compiler_options=FAST_COMPILE if small else None
        )
    return _COMPILED[st]


# ---------------------------------------------------------------------------------------------
# Host side: earth's preprocessing, padding to buckets, reading the result back.

# Shapes are rounded up to one of 8 steps per octave (at most 12.5% padding), so that nearby
# problem sizes share a compilation.
BUCKET_STEPS = 8
# earth's get.weights: weights within this of the first one count as equal (no weights).
EQUAL_WEIGHTS = 1e-8
# earth's tweak.zero.weights: weights below mean / 1e8 are raised to it.
ZERO_WEIGHT_FRACTION = 1e-8
# earth.c CheckRssNull: a null RSS below 1e-8 N is raised to it (constant response).
MIN_RSS_NULL_PER_ROW = 1e-8
# earth.c raises fast.k below 3 to 3 (queue boundary conditions).
FAST_K_MIN = 3
# Problems with at most this many cells (N p) get power-of-two shapes: compile-bound anyway.
SMALL_CELLS = 1 << 16
SMALL_MIN = {"rows": 512, "vars": 8, "block": 16, "slots": 32}


def bucket(n: int) -> int:
    """Smallest ``m 2^e >= n`` with ``BUCKET_STEPS <= m < 2 BUCKET_STEPS``."""
    if n <= BUCKET_STEPS:
        return max(n, 1)
    step = 1 << max(0, (n - 1).bit_length() - BUCKET_STEPS.bit_length())
    return -(-n // step) * step


@dataclasses.dataclass
class ForwardResult:
    """Output of the forward pass.

    Attributes:
      slots: term slots in the model (earth's FullSet), increasing, intercept (0) first.
      var, cut, dirn, parent: earth's description of every slot [M] (numpy).
      r: [M, M] projections of each slot's weighted column on the orthonormal basis.
      z: [M, K] the basis' projections of the weighted, unscaled targets.
      rss_out: RSS of those targets outside the span of every slot (float).
      termination: earth's termination code (``TERMINATION``).
      rsq: forward-pass RSq. minspan, endspan: the intercept's spans.
      weighted: whether earth's weighted search ran.
      n_steps: forward steps taken.

    """

    slots: list[int]
    var: np.ndarray
    cut: np.ndarray
    dirn: np.ndarray
    parent: np.ndarray
    r: np.ndarray
    z: np.ndarray
    rss_out: float
    termination: int
    rsq: float
    minspan: int
    endspan: int
    weighted: bool
    n_steps: int


def earth_weights(sample_weight: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Earth's case-weight rules: None when all weights are equal, tiny ones raised.

    Raises:
      ValueError: when the weights' mean is (almost) zero.

    """
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if not np.any(np.abs(w - w[0]) > EQUAL_WEIGHTS):
        return None
    mean = float(w.mean())
    if mean < ZERO_WEIGHT_FRACTION:
        raise ValueError(f"the mean of sample_weight is (almost) zero: {mean!r}")
    return np.maximum(w, mean * ZERO_WEIGHT_FRACTION)


def _scaled_targets(y: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Earth's Scale.y (one response: centred, divided by its sd) and the null RSS."""
    n, k = y.shape
    ys = y - y.mean(0)
    if k == 1:
        sd = float(np.std(y[:, 0], ddof=1)) if n > 1 else 0.0
        if sd > 0:
            ys = ys / sd
    rss_null = 0.0
    for j in range(k):
        if w is None:
            ss = float(np.sum((ys[:, j] - ys[:, j].mean()) ** 2))
        else:
            wm = float(np.sum(w * ys[:, j]) / np.sum(w))
            ss = float(np.sum(w * (ys[:, j] - wm) ** 2))
        rss_null = max(rss_null + ss, MIN_RSS_NULL_PER_ROW * n)
    return ys, rss_null


@dataclasses.dataclass(frozen=True)
class Options:
    """earth's forward-pass arguments.

    Attributes:
      nk: term slots including the intercept.
      degree: maximum interaction degree.
      thresh: earth's thresh.
      penalty: GCV penalty per knot (-1: free).
      minspan: > 0 rows between knots, 0 automatic, < 0 number of knots.
      endspan: > 0 rows outside the extreme knots, 0 automatic.
      fast_k: parents scored per step (<= 0: all).
      fast_beta: ageing of the parent queue.
      tol: collinearity tolerance of a new hinge (<= 0: earth's 0.01, then 1e-5).
      adjust_endspan: earth's Adjust.endspan.

    """

    nk: int
    degree: int = 1
    thresh: float = 0.001
    penalty: float = 2.0
    minspan: int = 0
    endspan: int = 0
    fast_k: int = 20
    fast_beta: float = 1.0
    tol: float = 0.0
    adjust_endspan: float = spans.ADJUST_ENDSPAN


def forward_pass(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, options: Options
) -> ForwardResult:
    """Earth's forward pass.

    Args:
      x: [N, p] float64 inputs (finite).
      y: [N, K] float64 targets (finite).
      weights: [N] case weights after ``earth_weights`` (None: unweighted).
      options: earth's arguments.

    Returns:
      A ``ForwardResult``.

    """
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        st, data, params, host = _prepare(x, y, weights, options)
        state = compiled(st, data, params)(data, params)
        yo = np.zeros((st.n_pad, y.shape[1]))
        yo[: x.shape[0]] = y * host["sw"][: x.shape[0], None]
        z, rss_out = _project(state.q, jnp.asarray(yo))
        return _result(st, state, np.asarray(z), float(rss_out), host)


@jax.jit
def _project(q, yo):
    """``Q yo`` (Q [M, N] orthonormal rows, in blocks) and the RSS of ``yo`` outside their span."""
    z = orthobasis.matmul(q, yo)
    resid = yo - jnp.matmul(jnp.concatenate(q).T, z, precision=HP)
    return z, jnp.sum(resid * resid)


@dataclasses.dataclass(frozen=True)
class _Shapes:
    """How a problem is padded: rows, predictors, outputs, and rules for the other sizes.

    Small problems (N p <= ``SMALL_CELLS``) are dominated by compilation: their sizes are powers
    of two with generous minimums and their knot counts are padded to the row count, so that
    most of them share a few compilations. Larger ones use ``bucket`` (at most 12.5% padding)
    and keep p and K exact: the work per step grows with them.
    """

    rows: int
    vars: int
    outs: int
    small: bool

    def knots(self, count: int) -> int:
        return self.rows if self.small else bucket(count)

    def top(self, length: int) -> int:
        return self.rows if self.small else bucket(length)

    def block(self, span: int) -> int:
        return max(_pow2(span), SMALL_MIN["block"]) if self.small else bucket(span)

    def slots(self, nk: int) -> int:
        nk = max(nk, 3)
        if self.small:
            nk = max(_pow2(nk), SMALL_MIN["slots"])
        step = orthobasis.block_size(nk)
        return -(-nk // step) * step


def _shapes(n: int, p: int, k: int = 1) -> _Shapes:
    if n * p <= SMALL_CELLS:
        return _Shapes(
            max(_pow2(n + 1), SMALL_MIN["rows"]), max(_pow2(p), SMALL_MIN["vars"]), _pow2(k), True
        )
    return _Shapes(bucket(n + 1), p, k, False)


def estimate_device_bytes(
    n: int,
    p: int,
    k: int,
    nk: int,
    degree: int,
    fast_k: int = 20,
    minspan: int = 0,
    endspan: int = 0,
    weighted: bool = False,
) -> int:
    """Approximate device memory of a forward pass (data, basis, statistics), in bytes.

    The largest parts: the basis (nk rows of N), the predictors in three layouts (p N each),
    and with degree >= 2 a pool of ``fast_k`` parents holding ~10 numbers per knot and a bin
    index per row and predictor.
    """
    shapes = _shapes(n, p, k)
    npad, p_pad = shapes.rows, shapes.vars
    end1 = spans.endspan(n, p, 1, endspan)
    span1 = spans.minspan(n, n, p, minspan)
    c_root = shapes.knots(max(1, (n - 2 * end1) // span1 + 1))
    m = shapes.slots(nk)
    f64, i32 = 8, 4
    data = p_pad * npad * (3 * f64 + 2 * i32) + npad * (2 + k) * f64
    layout = p_pad * c_root * shapes.block(span1) * (f64 + i32)
    basis = m * npad * f64 * (2 if weighted else 1)
    per_knot = (8 + 2 * k) * f64
    root = p_pad * c_root * per_knot
    pool = 0
    if degree > 1:
        c_pool = shapes.knots(spans.max_knots(n, p, spans.endspan(n, p, 2, endspan), minspan))
        slots = min(max(fast_k if fast_k > 0 else nk, FAST_K_MIN), m)
        pool = slots * (p_pad * c_pool * per_knot + p_pad * npad * i32 + npad * f64)
    return int(data + layout + basis + root + pool)


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _prepare(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, options: Options):
    """Host-side set-up: earth's preprocessing, padding, the device arrays and parameters."""
    nk, degree, minspan, endspan = options.nk, options.degree, options.minspan, options.endspan
    adjust_endspan = options.adjust_endspan
    n, p_real = x.shape
    k = y.shape[1]
    weighted = weights is not None
    w = weights if weighted else np.ones(n)
    ys, rss_null = _scaled_targets(y, weights)
    shapes = _shapes(n, p_real, k)
    npad, p = shapes.rows, shapes.vars
    # Padding predictors are constant: no knot, no linear term, never chosen. Padding outputs
    # are zero: they add nothing to any sum.
    x = np.concatenate([x, np.zeros((n, p - p_real))], axis=1)
    ys = np.concatenate([ys, np.zeros((n, shapes.outs - k))], axis=1)
    k = shapes.outs
    perm = np.argsort(x, axis=0, kind="stable").T  # [p, N]
    xs_raw = np.take_along_axis(x.T, perm, axis=1)
    mean = x.mean(0)
    xs_c = xs_raw - mean[:, None]
    end1 = spans.endspan(n, p_real, 1, endspan, adjust_endspan)
    span1 = spans.minspan(n, n, p_real, minspan)
    start1 = spans.startspan(n, end1, span1, minspan)
    grids = [
        spans.root_grid(xs_raw[j], end1, span1, start1, weighted)
        if j < p_real
        else np.zeros(0, np.int64)
        for j in range(p)
    ]
    n_cand_root = shapes.knots(max([g.size for g in grids] + [1]))
    fast = options.fast_k if options.fast_k > 0 else nk
    n_slots = shapes.slots(nk)
    row_block = orthobasis.block_size(n_slots)
    fast = min(max(fast, FAST_K_MIN), n_slots)
    end2 = spans.endspan(n, p_real, 2, endspan, adjust_endspan)
    if degree > 1:
        n_cand_pool = shapes.knots(spans.max_knots(n, p_real, end2, minspan))
        pool_size = fast
    else:
        n_cand_pool, pool_size = 1, 0
    block = shapes.block(span1)
    layout = cand.root_layout(grids, perm, xs_c, span1, block, n_cand_root, npad - 1, shapes.top)
    st = Static(
        n_pad=npad,
        n_vars=p,
        n_out=k,
        n_slots=n_slots,
        row_block=row_block,
        n_cand_root=n_cand_root,
        root_block=block,
        root_top=layout["top"].shape[1],
        n_cand_pool=n_cand_pool,
        pool_size=pool_size,
        fast_k=fast,
        max_degree=degree,
        weighted=weighted,
    )
    sw = np.zeros(npad)
    sw[:n] = np.sqrt(w)
    perm_pad = np.concatenate([perm, np.broadcast_to(np.arange(n, npad), (p, npad - n))], 1)
    nxt = np.full((p, npad), npad, dtype=np.int32)
    for j in range(p):
        nxt[j, :n] = np.searchsorted(xs_raw[j], xs_raw[j], side="right")

    def pad_cols(a):
        out = np.zeros((p, npad))
        out[:, :n] = a
        return out

    yw = np.zeros((npad, k))
    yw[:n] = ys * sw[:n, None]
    data = Data(
        xt=jnp.asarray(pad_cols(x.T)),
        xc=jnp.asarray(pad_cols((x - mean).T)),
        perm=jnp.asarray(perm_pad.astype(np.int32)),
        xs=jnp.asarray(pad_cols(xs_c)),
        nxt=jnp.asarray(nxt),
        sw=jnp.asarray(sw),
        yw=jnp.asarray(yw),
        q0=jnp.asarray(sw / np.sqrt(np.sum(sw * sw))),
        root=cand.RootLayout(**{key: jnp.asarray(v) for key, v in layout.items()}),
    )
    params = Params(
        n_rows=jnp.int32(n),
        n_vars=jnp.int32(p_real),
        nk=jnp.int32(nk),
        thresh=jnp.float64(options.thresh),
        penalty=jnp.float64(options.penalty),
        fast_beta=jnp.float64(options.fast_beta),
        tol=jnp.float64(options.tol),
        rss_null=jnp.float64(rss_null),
        endspan=jnp.int32(end2),
        minspan=jnp.int32(minspan),
    )
    host = {"sw": sw, "minspan": span1, "endspan": end1, "thresh": options.thresh, "nk": nk}
    return st, data, params, host


def _termination(nk, thresh, rsq, rsq_delta, grsq, no_term) -> int:
    """Earth's ForwardEpilog: the reported reason, from the final counters, in its order."""
    if nk < 3:
        return 1
    if thresh != 0 and grsq < MIN_GRSQ:
        return 2 if grsq < GRSQ_INF else 3
    if thresh != 0 and rsq_delta < thresh:
        return 4
    if rsq >= 1 - thresh:
        return 5
    if no_term:
        return 6
    return 7


def _result(st: Static, state: State, z, rss_out, host) -> ForwardResult:
    t = jax.device_get(state.terms)
    keep = np.asarray(t.used)
    slots = [s for s in range(st.n_slots) if keep[s]]
    var = np.asarray(t.var)
    cut = np.where(np.asarray(t.dirn) == DIR_LINEAR, np.nan, np.asarray(t.cut))
    return ForwardResult(
        slots=slots,
        var=var,
        cut=cut,
        dirn=np.asarray(t.dirn),
        parent=np.asarray(t.parent),
        r=np.asarray(state.r),
        z=z,
        rss_out=rss_out,
        termination=_termination(
            host["nk"],
            host["thresh"],
            float(state.rsq),
            float(state.rsq_delta),
            float(state.grsq),
            bool(state.no_term),
        ),
        rsq=float(state.rsq),
        minspan=host["minspan"],
        endspan=host["endspan"],
        weighted=st.weighted,
        n_steps=int(state.step),
    )
