"""Candidate statistics of the intercept (MARS's root parent): its knots lie on a regular grid
(every ``minspan``-th row below a per-predictor top), so their sums are block sums of a fixed
gather layout built once on the host (``root_layout``). The sums and their meaning are those of
``spline.candidates``, which holds the other parents' statistics and the scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from spline.candidates import (
    Stats,
    _accumulate,
    _combine,
    _fixed_stats,
    cumsum,
    gather,
)


class RootLayout(NamedTuple):
    """Gather layout of the intercept's knots (built on the host by ``root_layout``).

    ``top`` [p, Lt] row indices above the highest knot; ``blocks`` [p, C, B] row indices between
    knot c and knot c - 1 (block 0 unused); entries past the data point at a zero padding row.
    ``x_top``, ``x_blocks``: the centred predictor in the same layout. ``tc``, ``pos``, ``valid``
    [p, C]: the knots.
    """

    top: jax.Array
    blocks: jax.Array
    x_top: jax.Array
    x_blocks: jax.Array
    tc: jax.Array
    pos: jax.Array
    valid: jax.Array


def root_layout(
    positions: list[np.ndarray],
    perm: np.ndarray,
    xs_c: np.ndarray,
    span: int,
    block: int,
    n_cand: int,
    pad_row: int,
    round_up: Callable[[int], int] = int,
) -> dict[str, np.ndarray]:
    """Host-side gather layout for the intercept's knots.

    Args:
      positions: per predictor, knot positions (decreasing, spaced ``span``), from ``root_grid``.
      perm: [p, N] the sorting permutations (real rows).
      xs_c: [p, N] each predictor sorted and centred.
      span: the intercept's minspan.
      block: B >= span, the padded block width.
      n_cand: C, the padded number of knots.
      pad_row: index of a row whose values are all zero.
      round_up: padding rule for the length of the top region (shared compilations).

    Returns:
      Numpy arrays for ``RootLayout`` (int32 indices, float64 values).

    """
    p, n = perm.shape
    tops = [n - 1 - int(pos[0]) if pos.size else 0 for pos in positions]
    top_len = round_up(max(tops + [1]))
    top = np.full((p, top_len), pad_row, dtype=np.int32)
    blocks = np.full((p, n_cand, block), pad_row, dtype=np.int32)
    tc = np.zeros((p, n_cand))
    pos_out = np.zeros((p, n_cand), dtype=np.int32)
    valid = np.zeros((p, n_cand), dtype=bool)
    for j, pos in enumerate(positions):
        if pos.size == 0:
            continue
        top[j, : tops[j]] = perm[j, pos[0] + 1 :]
        count = pos.size
        # Block c covers sorted positions pos[c] + 1 .. pos[c] + span = pos[c - 1].
        starts = pos[1:count] + 1
        idx = starts[:, None] + np.arange(span)[None, :]
        blocks[j, 1:count, :span] = perm[j, idx]
        tc[j, :count] = xs_c[j, pos]
        pos_out[j, :count] = pos
        valid[j, :count] = True
    x_full = np.zeros((p, pad_row + 1))
    for j in range(p):
        x_full[j, perm[j]] = xs_c[j]
    return {
        "top": top,
        "blocks": blocks,
        "x_top": np.take_along_axis(x_full, top, axis=1),
        "x_blocks": np.take_along_axis(x_full, blocks.reshape(p, -1), axis=1).reshape(blocks.shape),
        "tc": tc,
        "pos": pos_out,
        "valid": valid,
    }


def _root_suffix(layout: RootLayout, v: jax.Array, power: int = 1) -> tuple:
    """Suffix sums at the intercept's knots of ``v x^power`` and ``v``.

    Args:
      layout: the intercept's gather layout.
      v: [n, N] row values, one contiguous row per column.
      power: the power of the predictor in the first sum.

    Returns:
      Two arrays [p, n, C].

    """
    hp = jax.lax.Precision.HIGHEST
    xt, xb = layout.x_top**power, layout.x_blocks**power
    ones_t, ones_b = jnp.ones(xt.shape[-1], xt.dtype), jnp.ones(xb.shape[-1], xb.dtype)
    tops, blocks = [], []
    for vi in v:
        # One 1-D gather from a contiguous row per column; sums over the short minor axis as
        # products with a vector of ones (twice as fast as reductions on CPU).
        vt, vb = gather(vi, layout.top), gather(vi, layout.blocks)
        tops += [jnp.matmul(vt * xt, ones_t, precision=hp), jnp.matmul(vt, ones_t, precision=hp)]
        blocks += [jnp.matmul(vb * xb, ones_b, precision=hp), jnp.matmul(vb, ones_b, precision=hp)]
    # Block 0 holds no rows: the top region is added to every suffix sum instead.
    block_sums = jnp.stack(blocks, 1).at[..., 0].set(0.0)  # [p, 2n, C]
    suffix = jnp.stack(tops, 1)[..., None] + cumsum(block_sums)
    return suffix[:, 0::2], suffix[:, 1::2]


def root_stats(
    layout: RootLayout, sw: jax.Array, yw: jax.Array, q0: jax.Array, xc: jax.Array
) -> Stats:
    """Fixed statistics of the intercept (basis sums zero: add ``q0`` with ``root_add_columns``).

    Args:
      layout: the intercept's gather layout.
      sw: [N] square roots of the case weights (the intercept's column), zero on padding rows.
      yw: [N, K] weighted targets.
      q0: [N] the normalized intercept column.
      xc: [p, N] centred predictors.

    """
    cols = jnp.concatenate([(sw * sw)[None], (sw * q0)[None], (sw[:, None] * yw).T])
    sx, s1 = _root_suffix(layout, cols)  # [p, 2 + K, C]
    w2xx, _ = _root_suffix(layout, (sw * sw)[None], power=2)
    return _fixed_stats(sx, s1, w2xx[:, 0], layout.tc, layout.pos, layout.valid, sw, yw, xc)


def root_add_columns(
    layout: RootLayout, st: Stats, sw: jax.Array, xc: jax.Array, q: jax.Array, qy: jax.Array
) -> Stats:
    """Adds basis columns ``q`` [n, N] (rows; ``qy = q y`` [n, K]) to the intercept's sums."""
    v = sw[None, :] * q
    sx, s1 = _root_suffix(layout, v)
    u = _combine(sx, s1, layout.tc[:, None])  # [p, n, C]
    ql = jnp.einsum("pr,nr->pn", xc, v, precision=jax.lax.Precision.HIGHEST)
    return _accumulate(st, u, qy, ql)
