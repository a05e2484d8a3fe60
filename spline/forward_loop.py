"""MARS forward pass, the device loop: earth 5.3.2's term search as one jitted loop.

The host side (earth's preprocessing, padding to buckets, reading the result back) is
`spline.forward`, which compiles `run` here (`forward.compiled`); the types and earth's constants
are `spline.forward_state`.

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

import functools

import jax
import jax.numpy as jnp

from spline import candidates as cand
from spline import candidates_root as root_cand
from spline import fastk, orthobasis, spans
from spline.candidates import Stats
from spline.forward_state import (
    DIR_DOWN,
    DIR_LINEAR,
    DIR_UP,
    HP,
    LEGAL_DELTA_FACTOR,
    LEGAL_RSS_FACTOR,
    MIN_GRSQ,
    UNUSABLE_DEGREE,
    Data,
    Params,
    Pool,
    State,
    Static,
    Terms,
    _maybe_zero,
    _new_form,
    gcv,
    term_values,
)

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
    root = root_cand.root_add_columns(data.root, state.root, data.sw, data.xc, qnew, qy_new)
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
    root = root_cand.root_stats(data.root, data.sw, data.yw, data.q0, data.xc)
    root = root_cand.root_add_columns(
        data.root, root, data.sw, data.xc, data.q0[None, :], qy0[None, :]
    )
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
