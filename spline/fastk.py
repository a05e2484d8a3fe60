"""Earth's Fast MARS parent queue (Friedman 1993, "Fast MARS"), as earth 5.3.2 keeps it.

Each step scores only the first ``fast_k`` parents of a queue sorted by the best RSS drop each
parent gave when last scored (new terms enter with ``+inf``), after ageing: the sorted rank plus
``fast_beta`` times the number of term slots added since the parent was last scored. Ties fall
back to the larger RSS drop, then the lower term index.

As in earth, queue entry ``k`` stands for term slot ``k`` and a step appends one entry per term it
adds while term slots advance by two, so after a single-term step entries and slots part ways;
earth keeps this, so we do. Parents that cannot take a child (degree reached, unused slot) keep
their ``+inf`` and are skipped when selected.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

# earth.c: InitQ's placeholders for entries not yet added.
UNSET_RSS = -1.0
UNSET_TERMS = -99


@flax.struct.dataclass
class Queue:
    """``rss`` [M] best RSS drop per entry, ``n_terms`` [M] the term count when it was scored,
    ``size`` entries in use, ``order`` [M] entries sorted (earth's SortedQ).
    """

    rss: jax.Array
    n_terms: jax.Array
    size: jax.Array
    order: jax.Array


def init(m: int, rss_null: ArrayLike) -> Queue:
    """The queue holding the intercept, scored with the null RSS (earth's first AddTermToQ)."""
    rss = jnp.full(m, UNSET_RSS).at[0].set(jnp.maximum(UNSET_RSS, rss_null))
    return Queue(
        rss=rss,
        n_terms=jnp.full(m, UNSET_TERMS, jnp.int32).at[0].set(1),
        size=jnp.int32(1),
        order=jnp.arange(m, dtype=jnp.int32),
    )


def select(queue: Queue, k: int) -> tuple[jax.Array, jax.Array]:
    """The first ``k`` parents of the sorted queue [k] and which of them exist [k]."""
    return queue.order[:k], jnp.arange(k) < queue.size


def update(
    queue: Queue, parents: jax.Array, scored: jax.Array, best: jax.Array, n_terms: ArrayLike
) -> Queue:
    """Records the best RSS drop of each scored parent (earth's UpdateRssDeltaInQ)."""
    m = queue.rss.shape[0]
    idx = jnp.where(scored, parents, m)
    return queue.replace(
        rss=queue.rss.at[idx].set(best, mode="drop"),
        n_terms=queue.n_terms.at[idx].set(n_terms, mode="drop"),
    )


def add(queue: Queue, n_terms: ArrayLike, two: jax.Array, fast_beta: ArrayLike) -> Queue:
    """Appends one entry (two when ``two``) with RSS drop ``+inf``, then re-sorts the queue."""
    m = queue.rss.shape[0]
    first, second = queue.size, jnp.where(two, queue.size + 1, m)
    rss = queue.rss.at[first].set(jnp.inf, mode="drop").at[second].set(jnp.inf, mode="drop")
    nt = queue.n_terms.at[first].set(n_terms, mode="drop").at[second].set(n_terms, mode="drop")
    size = queue.size + 1 + two.astype(jnp.int32)
    return sort(Queue(rss=rss, n_terms=nt, size=size, order=queue.order), n_terms, fast_beta)


def sort(queue: Queue, n_terms: ArrayLike, fast_beta: ArrayLike) -> Queue:
    """Sorts the entries: by RSS drop (descending, then index), then by aged rank
    ``rank + fast_beta * (n_terms - entry's n_terms)`` when ``fast_beta > 0``.
    """
    m = queue.rss.shape[0]
    ids = jnp.arange(m, dtype=jnp.int32)
    invalid = (ids >= queue.size).astype(jnp.int32)
    by_rss = jnp.lexsort((ids, -queue.rss, invalid))
    rank = jnp.zeros(m, queue.rss.dtype).at[by_rss].set(jnp.arange(m, dtype=queue.rss.dtype))
    aged = rank + fast_beta * (n_terms - queue.n_terms)
    by_age = jnp.lexsort((ids, -queue.rss, aged, invalid))
    order = jnp.where(fast_beta > 0, by_age, by_rss).astype(jnp.int32)
    return queue.replace(order=order)
