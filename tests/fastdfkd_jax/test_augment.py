"""Tests of fastdfkd_jax.data.augment: known values, invariances, gradients, recompiles."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax.data import augment

MEAN = (0.5, 0.25, 0.125)
STD = (0.5, 0.25, 2.0)


def _images(n=4, h=6, w=5, c=3, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, h, w, c))


def test_crop_padding_zero_is_identity():
    x = _images()
    np.testing.assert_array_equal(augment.random_crop(jax.random.key(1), x, padding=0), x)
    centred = jnp.full((x.shape[0], 2), 3)
    np.testing.assert_array_equal(augment.crop(x, centred, padding=3), x)


def test_crop_known_values():
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    out = augment.crop(x, jnp.array([[0, 0]]), padding=1)
    expected = [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    np.testing.assert_array_equal(out[0, :, :, 0], expected)
    out = augment.crop(x, jnp.array([[2, 1]]), padding=1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 5, 6], [7, 8, 9], [0, 0, 0]])


def test_crop_equals_slice_of_padded_image():
    x = _images(n=3)
    pad = 2
    offsets = np.array([[0, 4], [1, 2], [4, 0]])
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = augment.crop(x, jnp.asarray(offsets), padding=pad)
    for i, (r, c) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, r : r + x.shape[1], c : c + x.shape[2]])


def test_random_crop_offsets_in_range_and_per_sample():
    # 64 copies of one image: with per-sample offsets the crops must differ.
    pad = 4
    x = jnp.broadcast_to(_images(n=1, h=8, w=8, c=1), (64, 8, 8, 1))
    out = jax.jit(lambda k: augment.random_crop(k, x, padding=pad))(jax.random.key(3))
    assert out.shape == x.shape
    distinct = {np.asarray(o).tobytes() for o in out}
    assert len(distinct) > 10
    # Every output is a slice of the padded image at some offset in 0..2*pad.
    padded = np.pad(np.asarray(x[0]), ((pad, pad), (pad, pad), (0, 0)))
    slices = {
        padded[r : r + 8, c : c + 8].tobytes()
        for r in range(2 * pad + 1)
        for c in range(2 * pad + 1)
    }
    assert distinct <= slices


def test_flip_matches_mirror_where_flipped():
    x = _images(n=16)
    rng = jax.random.key(4)
    mask = np.asarray(jax.random.bernoulli(rng, augment.FLIP_PROBABILITY, (16,)))
    assert 0 < mask.sum() < 16
    out = np.asarray(augment.random_flip(rng, x))
    np.testing.assert_array_equal(out[mask], np.asarray(x)[mask][:, :, ::-1])
    np.testing.assert_array_equal(out[~mask], np.asarray(x)[~mask])


def test_flip_twice_with_same_key_is_identity():
    x = _images(n=8)
    rng = jax.random.key(5)
    np.testing.assert_array_equal(augment.random_flip(rng, augment.random_flip(rng, x)), x)


def test_normalize_known_values_and_inverse():
    x = jnp.array([[[[1.0, 0.25, 0.125]]]])
    np.testing.assert_allclose(augment.normalize(x, MEAN, STD), [[[[1.0, 0.0, 0.0]]]])
    y = _images()
    np.testing.assert_allclose(
        augment.denormalize(augment.normalize(y, MEAN, STD), MEAN, STD), y, atol=1e-6
    )
    with pytest.raises(ValueError, match="per channel"):
        augment.normalize(y, (0.5,) * 2, STD)


def test_augment_is_crop_then_flip_then_normalize():
    x = _images(n=8)
    rng = jax.random.key(6)
    crop_rng, flip_rng = jax.random.split(rng)
    expected = augment.normalize(
        augment.random_flip(flip_rng, augment.random_crop(crop_rng, x, padding=2)), MEAN, STD
    )
    out = augment.augment(rng, x, padding=2, flip=True, mean=MEAN, std=STD)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_crop_gradient_counts_selections():
    # The same image cropped at several offsets: d sum(crops) / d pixel = times the pixel is used.
    h, w, pad = 4, 5, 2
    x = _images(n=1, h=h, w=w, c=2)
    offsets = np.array([[0, 0], [2, 2], [4, 4], [1, 3]])

    def loss(image):
        batch = jnp.broadcast_to(image, (len(offsets), h, w, 2))
        return augment.crop(batch, jnp.asarray(offsets), padding=pad).sum()

    grad = np.asarray(jax.grad(loss)(x))
    counts = np.zeros((h + 2 * pad, w + 2 * pad))
    for r, c in offsets:
        counts[r : r + h, c : c + w] += 1
    expected = np.repeat(counts[pad : pad + h, pad : pad + w, None], 2, axis=-1)[None]
    np.testing.assert_array_equal(grad, expected)


def test_augment_gradient_is_window_mask_over_std():
    x = _images(n=8)
    rng = jax.random.key(7)
    grad = jax.grad(
        lambda im: augment.augment(rng, im, padding=3, flip=True, mean=MEAN, std=STD).sum()
    )(x)
    assert np.isfinite(grad).all()
    # Each pixel is used at most once per sample, scaled by 1 / std of its channel.
    mask = np.asarray(grad) * np.asarray(STD)
    np.testing.assert_allclose(mask, np.round(mask), atol=1e-5)
    assert set(np.unique(np.round(mask))) <= {0.0, 1.0}
    assert (mask.reshape(8, -1).sum(-1) > 0).all()


def test_augment_compiles_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(rng, images):
        return augment.augment(rng, images, padding=4, flip=True, mean=MEAN, std=STD)

    x = _images(n=4, h=8, w=8)
    outs = [run(jax.random.key(i), x + i) for i in range(3)]
    assert not np.allclose(outs[0], outs[1] - 1 / np.asarray(STD))


def test_random_resized_crop_full_crop_is_identity():
    x = _images(n=2, h=8, w=8, c=1)
    out = jax.jit(
        lambda k, im: augment.random_resized_crop(
            k, im, size=(8, 8), scale=(1.0, 1.0), ratio=(1.0, 1.0)
        )
    )(jax.random.key(8), x)
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_random_resized_crop_per_sample_and_differentiable():
    x = jnp.broadcast_to(_images(n=1, h=12, w=12, c=1), (6, 12, 12, 1))

    @jax.jit
    def run(im):
        out = augment.random_resized_crop(jax.random.key(9), im, size=(5, 6), scale=(0.2, 0.6))
        return out.sum(), out

    (_, out), grad = jax.value_and_grad(run, has_aux=True)(x)
    assert out.shape == (6, 5, 6, 1)
    assert len({np.asarray(o).round(5).tobytes() for o in out}) == 6
    assert np.isfinite(grad).all() and (np.abs(grad).reshape(6, -1).sum(-1) > 0).all()


def test_augment_resized_crop_is_crop_then_flip_then_normalize():
    x = _images(n=4, h=12, w=12)
    rng = jax.random.key(10)
    crop_rng, flip_rng = jax.random.split(rng)
    cropped = augment.random_resized_crop(crop_rng, x, size=(6, 6), scale=(0.75, 1.0))
    expected = augment.normalize(augment.random_flip(flip_rng, cropped), MEAN, STD)
    out = augment.augment_resized_crop(
        rng, x, size=(6, 6), scale=(0.75, 1.0), flip=True, mean=MEAN, std=STD
    )
    assert out.shape == (4, 6, 6, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    unflipped = augment.augment_resized_crop(
        rng, x, size=(6, 6), scale=(0.75, 1.0), flip=False, mean=MEAN, std=STD
    )
    np.testing.assert_allclose(unflipped, augment.normalize(cropped, MEAN, STD), rtol=1e-6)


def test_roll_jitter_same_shift_for_batch_within_range():
    max_shift = 2
    x = _images(n=3, h=7, w=7)
    roll = jax.jit(lambda k: augment.random_roll_jitter(k, x, max_shift))
    seen = set()
    for seed in range(20):
        out = np.asarray(roll(jax.random.key(seed)))
        matches = [
            (r, c)
            for r in range(-max_shift, max_shift + 1)
            for c in range(-max_shift, max_shift + 1)
            if np.array_equal(out, np.roll(np.asarray(x), (r, c), axis=(1, 2)))
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 5
    np.testing.assert_array_equal(augment.random_roll_jitter(jax.random.key(0), x, 0), x)
    grad = jax.grad(lambda im: augment.random_roll_jitter(jax.random.key(1), im, 3).sum())(x)
    np.testing.assert_array_equal(grad, np.ones_like(x))
