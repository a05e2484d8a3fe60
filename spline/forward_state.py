"""MARS forward pass, its types: the static shape, the data, the parameters and the loop's state
(`flax.struct` pytrees), earth's constants, and the small functions of terms both sides use.
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from spline import candidates as cand
from spline import candidates_root as root_cand
from spline import fastk, orthobasis
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
    root: root_cand.RootLayout


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
