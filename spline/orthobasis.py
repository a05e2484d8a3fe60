"""The forward pass' orthonormal basis: M rows of length N, stored as a tuple of row blocks.

Gram-Schmidt against the rows in use dominates the forward pass on CPU (it reads m N numbers
per step). Slicing a block out of one [M, N] array with a traced offset copies it first (XLA on
CPU does not fuse the slice into the product), which doubles that traffic; blocks held as
separate arrays are read in place, each behind a condition on the number of rows in use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

HP = jax.lax.Precision.HIGHEST
# R's lm (dqrdc2) tolerance: a column whose norm after orthogonalization is below 1e-8 of its own
# norm is linearly dependent; on squared norms, 1e-16.
QR_TOL = 1e-8
QR_TOL_SQ = QR_TOL * QR_TOL
# Rows per block: the smallest multiple of 16 that keeps the count of blocks (each an unrolled
# branch of the compiled loop) at most MAX_BLOCKS.
ROW_ALIGN = 16
MAX_BLOCKS = 16
# A second Gram-Schmidt pass when a column keeps less than this fraction of its squared norm:
# one pass leaves the new column orthogonal to about eps |b| / |residual| (< 1e-13 above it).
REORTHOGONALIZE = 1e-6

Rows = tuple  # tuple of [G, N] arrays


def block_size(n_rows: int) -> int:
    """Rows per block for a basis of at least ``n_rows`` rows."""
    blocks = -(-n_rows // ROW_ALIGN)
    return ROW_ALIGN * -(-blocks // MAX_BLOCKS)


def zeros(m: int, n: int, g: int) -> Rows:
    """An all-zero basis of ``m`` rows (a multiple of ``g``) of length ``n``."""
    return tuple(jnp.zeros((g, n)) for _ in range(m // g))


def set_row(rows: Rows, i: ArrayLike, value: jax.Array) -> Rows:
    """Writes ``value`` [N] into row ``i`` (traced): one in-place row update per block."""
    g = rows[0].shape[0]
    out = []
    for k, blk in enumerate(rows):
        r = i % g
        old = jax.lax.dynamic_index_in_dim(blk, r, keepdims=False)
        out.append(
            jax.lax.dynamic_update_index_in_dim(blk, jnp.where(i // g == k, value, old), r, axis=0)
        )
    return tuple(out)


def get_rows(rows: Rows, i: ArrayLike, n: int) -> jax.Array:
    """Rows ``i .. i + n - 1`` [n, N] (``i`` traced, all rows within the basis)."""
    g = rows[0].shape[0]
    branches = [
        functools.partial(jax.lax.dynamic_index_in_dim, blk, keepdims=False) for blk in rows
    ]
    return jnp.stack([jax.lax.switch((i + j) // g, branches, (i + j) % g) for j in range(n)])


def matmul(rows: Rows, y: jax.Array) -> jax.Array:
    """``Q y`` [M, K] for ``y`` [N, K]."""
    return jnp.concatenate([jnp.matmul(blk, y, precision=HP) for blk in rows])


def each_block(rows: Rows, n_used: ArrayLike, fn: Callable, carry: Any) -> Any:
    """``carry = fn(k, block, carry)`` for each block holding one of the first ``n_used`` rows."""
    g = rows[0].shape[0]
    for k, blk in enumerate(rows):
        carry = jax.lax.cond(
            k * g < n_used, lambda c, k=k, blk=blk: fn(k, blk, c), lambda c: c, carry
        )
    return carry


def orthogonalize(rows: Rows, b: jax.Array, n_used: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Block modified Gram-Schmidt of ``b`` [n, N] against the first ``n_used`` rows.

    Returns ``(residual [n, N], coefficients [M, n])``; a second pass runs when a column lost
    all but ``REORTHOGONALIZE`` of its squared norm (Giraud et al., "twice is enough").
    """
    g = rows[0].shape[0]
    m = g * len(rows)

    def one_pass(b):
        def block(k, blk, carry):
            b, coef = carry
            r = jnp.matmul(blk, b.T, precision=HP)  # [G, n]
            return b - jnp.matmul(r.T, blk, precision=HP), coef.at[k * g : (k + 1) * g].set(r)

        return each_block(rows, n_used, block, (b, jnp.zeros((m, b.shape[0]))))

    h, coef = one_pass(b)
    lost = jnp.sum(h * h, 1) < REORTHOGONALIZE * jnp.sum(b * b, 1)

    def again(h):
        h2, c2 = one_pass(h)
        return h2, coef + c2

    return jax.lax.cond(jnp.any(lost), again, lambda h: (h, coef), h)


def extend(
    rows: Rows, b: jax.Array, t: ArrayLike, exact: bool = False
) -> tuple[Rows, jax.Array, jax.Array]:
    """Orthonormal rows for ``b`` [2, N] after the first ``t`` rows; stores them at t, t + 1.

    Returns ``(rows, new rows [2, N], projections [M, 2])``: new row 1 is also orthogonalized
    against new row 0; entry t (t + 1) of the projections holds the residual norms. A column
    whose residual is below R's lm tolerance of its norm is dependent and left zero; with
    ``exact`` (earth's own basis) any nonzero residual is normalized.
    """
    h, coef = orthogonalize(rows, b, t)
    bb = jnp.sum(b * b, 1)
    q, norms = [], []
    c12 = None
    for i in range(2):
        hi = h[i] if i == 0 else h[1] - c12 * q[0]
        rho = jnp.sqrt(jnp.dot(hi, hi, precision=HP))
        keep = rho > 0 if exact else rho * rho > QR_TOL_SQ * bb[i]
        q.append(jnp.where(keep, hi / jnp.where(keep, rho, 1.0), 0.0))
        norms.append(rho)
        if i == 0:
            c12 = jnp.dot(q[0], h[1], precision=HP)
    rcol = coef.at[t, 0].set(norms[0]).at[t, 1].set(c12).at[t + 1, 1].set(norms[1])
    rows = set_row(set_row(rows, t, q[0]), t + 1, q[1])
    return rows, jnp.stack(q), rcol
