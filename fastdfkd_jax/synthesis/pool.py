"""The memory pool of synthetic images: a fixed-capacity on-device ring buffer, pure functions.

The original writes every synthetic image to disk as an 8-bit PNG and rebuilds a data loader after
each synthesis call; here the pool is an array in device memory (sharded along its first axis in
sharded runs), optionally stored as uint8 for parity with those PNGs.
"""

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from fastdfkd_jax.checks import check_choice

DTYPES = ("float32", "uint8")
# How images in [0, 1] become uint8 levels: 'truncate' (the original's `(x * 255).astype(uint8)`)
# or 'round' (the nearest level).
QUANTIZE = ("truncate", "round")
_UINT8_MAX = 255.0


@flax.struct.dataclass
class Pool:
    """Attributes:
    images: [capacity, H, W, C], float32 in [0, 1] or uint8 in [0, 255].
    size: int32 scalar, how many slots hold an image (grows to capacity, then stays).
    cursor: int32 scalar, the next slot to write (wraps around: oldest images are replaced first).
    round_levels: (static) a uint8 pool rounds to the nearest level; False truncates.
    """

    images: jax.Array
    size: jax.Array
    cursor: jax.Array
    round_levels: bool = flax.struct.field(pytree_node=False, default=False)


def init_pool(
    capacity: int, image_shape: Sequence[int], dtype: str = "float32", quantize: str = "truncate"
) -> Pool:
    """An empty pool of `capacity` images of `image_shape` (H, W, C); a uint8 pool quantizes its
    images as `quantize` says (`QUANTIZE`).
    """
    if capacity < 1:
        raise ValueError(f"pool capacity must be >= 1, got {capacity}.")
    check_choice("pool dtype", dtype, DTYPES)
    check_choice("pool quantize", quantize, QUANTIZE)
    return Pool(
        images=jnp.zeros((capacity, *image_shape), dtype),
        size=jnp.zeros((), jnp.int32),
        cursor=jnp.zeros((), jnp.int32),
        round_levels=quantize == "round",
    )


def _encode(images: jax.Array, dtype, round_levels: bool) -> jax.Array:
    images = jnp.clip(images, 0.0, 1.0)
    if dtype == jnp.uint8:
        levels = images * _UINT8_MAX
        return (jnp.round(levels) if round_levels else jnp.floor(levels)).astype(jnp.uint8)
    return images.astype(dtype)


def _decode(images: jax.Array) -> jax.Array:
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / _UINT8_MAX
    return images.astype(jnp.float32)


def add(pool: Pool, images: jax.Array) -> Pool:
    """Writes `images` [B, H, W, C] (in [0, 1]) at the cursor, wrapping around at capacity.

    B must not exceed the capacity (a larger batch would overwrite itself).
    """
    capacity = pool.images.shape[0]
    batch = images.shape[0]
    if batch > capacity:
        raise ValueError(f"Cannot add {batch} images to a pool of capacity {capacity}.")
    slots = (pool.cursor + jnp.arange(batch)) % capacity
    return pool.replace(
        images=pool.images.at[slots].set(_encode(images, pool.images.dtype, pool.round_levels)),
        size=jnp.minimum(pool.size + batch, capacity),
        cursor=(pool.cursor + batch) % capacity,
    )


def sample(pool: Pool, rng: jax.Array, batch: int) -> jax.Array:
    """`batch` images drawn uniformly with replacement from the filled slots, float32 [0, 1].

    The pool must hold at least one image (`size` > 0).
    """
    slots = jax.random.randint(rng, (batch,), 0, jnp.maximum(pool.size, 1))
    return _decode(pool.images[slots])
