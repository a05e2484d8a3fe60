"""Differentiable augmentations of the baselines' synthesis losses, as the original applies them.

- `random_flip_batch` / `jitter_and_flip`: DeepInversion's jitter (one circular roll for the whole
  batch) followed by ONE coin flip for the whole batch (the original flips all images or none;
  `augment.random_flip` flips each sample independently).
- `cmi_views`: CMI's two views of the same images: a global view (random crop with zero padding,
  flip, normalize) and a local view (random resized crop of 25-100% of the area, flip, normalize).

Images are NHWC floats; keys are explicit.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fastdfkd_jax.data import augment

# CMI's local view: kornia RandomResizedCrop(scale=[0.25, 1.0]) with its default aspect ratios.
CMI_LOCAL_SCALE = (0.25, 1.0)


def random_flip_batch(rng: jax.Array, images: jax.Array) -> jax.Array:
    """Mirrors left-right ALL of `images` [N, H, W, C] with probability 1/2, else none of them."""
    flip = jax.random.bernoulli(rng, augment.FLIP_PROBABILITY)
    return jnp.where(flip, images[:, :, ::-1], images)


def jitter_and_flip(rng: jax.Array, images: jax.Array, max_shift: int, flip: bool) -> jax.Array:
    """DeepInversion's `jitter_and_flip`: one random roll of the batch, then one batch-wide flip.

    Args:
      rng: PRNG key.
      images: [N, H, W, C] (the original applies it in normalized space; the roll and the flip
        commute with the per-channel normalization, so either space gives the same result).
      max_shift: largest shift in pixels, the original's int(side / 8) (4 for 32x32).
      flip: whether to flip at all.

    Returns:
      [N, H, W, C].

    """
    roll_rng, flip_rng = jax.random.split(rng)
    images = augment.random_roll_jitter(roll_rng, images, max_shift)
    return random_flip_batch(flip_rng, images) if flip else images


def cmi_views(
    rng: jax.Array,
    images: jax.Array,
    *,
    padding: int,
    flip: bool,
    mean: Sequence[float],
    std: Sequence[float],
    local_scale: tuple[float, float] = CMI_LOCAL_SCALE,
) -> tuple[jax.Array, jax.Array]:
    """CMI's global and local views of `images` [N, H, W, C] in [0, 1], both normalized.

    Global: `augment.augment` (random crop with `padding`, flip). Local: `augment.
    random_resized_crop` back to (H, W) with area fraction in `local_scale`, flip. Independent
    randomness for the two views.

    Returns:
      (global [N, H, W, C], local [N, H, W, C]).

    """
    global_rng, crop_rng, flip_rng = jax.random.split(rng, 3)
    height, width = images.shape[1:3]
    global_view = augment.augment(
        global_rng, images, padding=padding, flip=flip, mean=mean, std=std
    )
    local = augment.random_resized_crop(crop_rng, images, size=(height, width), scale=local_scale)
    if flip:
        local = augment.random_flip(flip_rng, local)
    return global_view, augment.normalize(local, mean, std)
