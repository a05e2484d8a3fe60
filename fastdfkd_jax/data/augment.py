"""Jittable, differentiable image augmentation: crop with padding, flips, resized crops, jitter.

Every function is pure, takes images `[N, H, W, C]` (NHWC, float) and, where random, an explicit
PRNG key. Randomness is per sample unless stated (the roll jitter of DeepInversion shifts the whole
batch by one offset, as the original does). All functions are differentiable with respect to the
images, so the same code augments real images for KD and, inside a synthesis loss, synthetic images
with gradients flowing back to the generator.

Each random transform is split into sampling its parameters and a deterministic `apply` part
(`crop`, `flip_horizontal`) so the deterministic part can be tested with known values.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Probability of a horizontal flip, as torchvision's RandomHorizontalFlip default.
FLIP_PROBABILITY = 0.5
# torchvision RandomResizedCrop defaults.
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Per-channel `(images - mean) / std`.

    Args:
      images: `[..., C]`.
      mean: `C` floats.
      std: `C` floats.

    Returns:
      Normalized images, same shape and dtype as `images`.

    """
    mean = jnp.asarray(mean, images.dtype)
    std = jnp.asarray(std, images.dtype)
    if mean.shape != images.shape[-1:] or std.shape != images.shape[-1:]:
        raise ValueError(
            f"mean {mean.shape} and std {std.shape} must have one entry per channel "
            f"({images.shape[-1]})."
        )
    return (images - mean) / std


def denormalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Inverse of `normalize`: `images * std + mean`. `images`: `[..., C]`."""
    return images * jnp.asarray(std, images.dtype) + jnp.asarray(mean, images.dtype)


def crop(images: jax.Array, offsets: jax.Array, *, padding: int) -> jax.Array:
    """Zero-pads by `padding` pixels on every side, then crops back to `H x W` at `offsets`.

    Args:
      images: `[N, H, W, C]`.
      offsets: int `[N, 2]`, the top-left corner `(row, col)` of each crop in the padded image,
        each in `0 .. 2 * padding`. Offset `(padding, padding)` gives the image back.
      padding: pixels of zero padding per side (torchvision `RandomCrop(size, padding=padding)`).

    Returns:
      `[N, H, W, C]`.

    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}.")
    _, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop_one(image, offset):
        # The channel offset is a traced zero so all start indices share a dtype.
        start = (offset[0], offset[1], jnp.zeros_like(offset[0]))
        return jax.lax.dynamic_slice(image, start, (height, width, channels))

    return jax.vmap(crop_one)(padded, offsets)


def random_crop(rng: jax.Array, images: jax.Array, *, padding: int) -> jax.Array:
    """Random crop with zero padding, an independent offset per sample.

    Same distribution as torchvision's `RandomCrop((H, W), padding=padding)`: offsets uniform in
    `0 .. 2 * padding` in each spatial dimension.

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]`.
      padding: pixels of zero padding per side; 0 returns `images` unchanged.

    Returns:
      `[N, H, W, C]`.

    """
    if padding == 0:
        return images
    offsets = jax.random.randint(rng, (images.shape[0], 2), 0, 2 * padding + 1)
    return crop(images, offsets, padding=padding)


def flip_horizontal(images: jax.Array, mask: jax.Array) -> jax.Array:
    """Mirrors left-right the images where `mask` is true.

    Args:
      images: `[N, H, W, C]`.
      mask: bool `[N]`.

    Returns:
      `[N, H, W, C]`: `images[i, :, ::-1]` where `mask[i]`, else `images[i]`.

    """
    return jnp.where(mask[:, None, None, None], images[:, :, ::-1], images)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
    """Horizontal flip of each sample with probability 1/2, independently.

    The mask is `jax.random.bernoulli(rng, FLIP_PROBABILITY, [N])`, so the same key flips the same
    samples (applying twice with one key is the identity).

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]`.

    Returns:
      `[N, H, W, C]`.

    """
    mask = jax.random.bernoulli(rng, FLIP_PROBABILITY, (images.shape[0],))
    return flip_horizontal(images, mask)


def augment(
    rng: jax.Array,
    images: jax.Array,
    *,
    padding: int,
    flip: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> jax.Array:
    """Random crop with zero padding, random horizontal flip, then normalization.

    The CIFAR pipeline of the original code (`RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`,
    `Normalize(mean, std)`), used on real images, on pool images in KD and differentiably on
    synthetic images in the synthesis loss.

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]` with values in `[0, 1]`.
      padding: crop padding in pixels (0: no crop).
      flip: whether to flip randomly.
      mean: `C` floats, per-channel mean.
      std: `C` floats, per-channel standard deviation.

    Returns:
      Normalized images `[N, H, W, C]`.

    """
    crop_fn = functools.partial(random_crop, padding=padding)
    return _crop_flip_normalize(rng, images, crop_fn, flip=flip, mean=mean, std=std)


def _crop_flip_normalize(rng, images, crop_fn, *, flip, mean, std):
    """`crop_fn(key, images)`, then a random flip if `flip`, then normalization."""
    crop_rng, flip_rng = jax.random.split(rng)
    images = crop_fn(crop_rng, images)
    if flip:
        images = random_flip(flip_rng, images)
    return normalize(images, mean, std)


def random_resized_crop(
    rng: jax.Array,
    images: jax.Array,
    *,
    size: tuple[int, int],
    scale: tuple[float, float] = DEFAULT_SCALE,
    ratio: tuple[float, float] = DEFAULT_RATIO,
    method: str = "linear",
) -> jax.Array:
    """Crops a random area and aspect ratio per sample and resizes it to `size` (ImageNet-style).

    Like torchvision's `RandomResizedCrop`: the crop's area fraction is uniform in `scale` and its
    aspect ratio (width / height) log-uniform in `ratio`. Where torchvision retries a crop that
    does not fit and falls back to a center crop, we clip the crop's sides to the image (a fixed
    number of operations, so it stays jittable); the position is uniform over where it fits.
    Resampling is `jax.image.scale_and_translate` (bilinear with antialiasing when shrinking),
    continuous in the crop box, so gradients flow to the images.

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]`.
      size: output `(height, width)`.
      scale: range of the crop area as a fraction of the image area.
      ratio: range of the crop's aspect ratio, width / height.
      method: interpolation method of `jax.image.scale_and_translate`.

    Returns:
      `[N, size[0], size[1], C]`.

    """
    n, height, width, channels = images.shape
    area_rng, ratio_rng, pos_rng = jax.random.split(rng, 3)
    area = jax.random.uniform(area_rng, (n,), minval=scale[0], maxval=scale[1]) * height * width
    log_ratio = jax.random.uniform(
        ratio_rng, (n,), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1])
    )
    aspect = jnp.exp(log_ratio)
    crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
    crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
    top_left = jax.random.uniform(pos_rng, (n, 2)) * jnp.stack(
        [height - crop_h, width - crop_w], axis=-1
    )
    out_h, out_w = size
    # scale_and_translate maps input coordinate u to output u * scale + translation.
    scales = jnp.stack([out_h / crop_h, out_w / crop_w], axis=-1)
    translations = -top_left * scales

    def resize_one(image, scale_hw, translation_hw):
        return jax.image.scale_and_translate(
            image,
            (out_h, out_w, channels),
            spatial_dims=(0, 1),
            scale=scale_hw,
            translation=translation_hw,
            method=method,
            antialias=True,
        )

    return jax.vmap(resize_one)(images, scales, translations)


def augment_resized_crop(
    rng: jax.Array,
    images: jax.Array,
    *,
    size: tuple[int, int],
    scale: tuple[float, float],
    flip: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> jax.Array:
    """Random resized crop, random horizontal flip, then normalization (the ImageNet pipeline).

    The original's ImageNet augmentation of synthetic images (`RandomResizedCrop(224, scale)`,
    `RandomHorizontalFlip()`, `Normalize(mean, std)`), differentiable like `augment`.

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]` with values in `[0, 1]`.
      size: output `(height, width)`.
      scale: range of the crop area as a fraction of the image area.
      flip: whether to flip randomly.
      mean: `C` floats, per-channel mean.
      std: `C` floats, per-channel standard deviation.

    Returns:
      Normalized images `[N, size[0], size[1], C]`.

    """
    crop_fn = functools.partial(random_resized_crop, size=size, scale=scale)
    return _crop_flip_normalize(rng, images, crop_fn, flip=flip, mean=mean, std=std)


def random_roll_jitter(
    rng: jax.Array, images: jax.Array, max_shift: int | tuple[int, int]
) -> jax.Array:
    """DeepInversion's jitter: rolls the whole batch by one random offset (wrapping around).

    The original draws `off1, off2 = random.randint(-lim, lim)` (inclusive) once per batch and
    applies `torch.roll(x, shifts=(off1, off2), dims=(2, 3))`; we do the same on NHWC.

    Args:
      rng: PRNG key.
      images: `[N, H, W, C]`.
      max_shift: largest shift in pixels, one int for both spatial dims or `(rows, cols)`.

    Returns:
      `[N, H, W, C]`.

    """
    max_rows, max_cols = (max_shift, max_shift) if isinstance(max_shift, int) else max_shift
    row_rng, col_rng = jax.random.split(rng)
    shift_rows = jax.random.randint(row_rng, (), -max_rows, max_rows + 1)
    shift_cols = jax.random.randint(col_rng, (), -max_cols, max_cols + 1)
    return jnp.roll(images, (shift_rows, shift_cols), axis=(1, 2))
