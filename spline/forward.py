"""MARS forward pass, the host side: earth 5.3.2's preprocessing, the problem padded to shape
buckets, the device loop (`spline.forward_loop`) called, its result read back.

`forward_pass(x, y, weights, options)` is the entry point (`spline.MARS.fit` calls it);
`estimate_device_bytes` sizes a problem before it runs.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from spline import candidates_root as root_cand
from spline import forward_loop as loop
from spline import forward_state as fstate
from spline import orthobasis, spans

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
SMALL_MIN = {"rows": 512, "vars": 8, "block": 16, "slots": 32}


# Compiled forward passes by their static shapes. Small problems are compile-bound: XLA's
# backend optimization level 0 halves their compile time (degree 2: 14 s -> 7 s measured) for a
# negligible run time; larger ones keep the default (level 0 runs N = 1e5 40% slower).
_COMPILED: dict = {}
# Problems with at most this many cells (N p) get power-of-two shapes: compile-bound anyway.
SMALL_CELLS = 1 << 16
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


def compiled(st: fstate.Static, data: fstate.Data, params: fstate.Params) -> jax.stages.Compiled:
    """The compiled ``forward_loop.run`` for these shapes (compiling it on first use)."""
    if st not in _COMPILED:
        _use_compilation_cache()
        small = st.n_pad * st.n_vars <= 2 * SMALL_CELLS
        _COMPILED[st] = loop.run.lower(st, data, params).compile(
            compiler_options=FAST_COMPILE if small else None
        )
    return _COMPILED[st]


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
      termination: earth's termination code (``fstate.TERMINATION``).
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
    resid = yo - jnp.matmul(jnp.concatenate(q).T, z, precision=fstate.HP)
    return z, jnp.sum(resid * resid)


@dataclasses.dataclass(frozen=True)
class _Shapes:
    """How a problem is padded: rows, predictors, outputs, and rules for the other sizes.

    Small problems (N p <= ``SMALL_CELLS``) are dominated by compilation: their sizes are
    powers of two with generous minimums and their knot counts are padded to the row count, so that
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
    layout = root_cand.root_layout(
        grids, perm, xs_c, span1, block, n_cand_root, npad - 1, shapes.top
    )
    st = fstate.Static(
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
    data = fstate.Data(
        xt=jnp.asarray(pad_cols(x.T)),
        xc=jnp.asarray(pad_cols((x - mean).T)),
        perm=jnp.asarray(perm_pad.astype(np.int32)),
        xs=jnp.asarray(pad_cols(xs_c)),
        nxt=jnp.asarray(nxt),
        sw=jnp.asarray(sw),
        yw=jnp.asarray(yw),
        q0=jnp.asarray(sw / np.sqrt(np.sum(sw * sw))),
        root=root_cand.RootLayout(**{key: jnp.asarray(v) for key, v in layout.items()}),
    )
    params = fstate.Params(
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
    if thresh != 0 and grsq < fstate.MIN_GRSQ:
        return 2 if grsq < fstate.GRSQ_INF else 3
    if thresh != 0 and rsq_delta < thresh:
        return 4
    if rsq >= 1 - thresh:
        return 5
    if no_term:
        return 6
    return 7


def _result(st: fstate.Static, state: fstate.State, z, rss_out, host) -> ForwardResult:
    t = jax.device_get(state.terms)
    keep = np.asarray(t.used)
    slots = [s for s in range(st.n_slots) if keep[s]]
    var = np.asarray(t.var)
    cut = np.where(np.asarray(t.dirn) == fstate.DIR_LINEAR, np.nan, np.asarray(t.cut))
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
