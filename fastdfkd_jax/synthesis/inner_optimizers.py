"""FastDFKD's inner optimizers other than the original's Adam, for the exact meta-gradient.

The exact meta-gradient differentiates through every inner step. Adam's per-coordinate
normalization `g / (sqrt(v) + eps)` is close to `sign(g)` in the first steps, whose derivative is
large and erratic (docs/benchmarks.md, "The exact meta-gradient"); these replace or hold it:

- `normalized_sgd`: each tensor moved by `-lr * g / rms(g)`, a smooth function of the gradient;
- `adam_held_normalizer`: Adam's values exactly, its normalizer held constant when differentiated.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# Guards the RMS in the normalized update of a tensor whose gradient is exactly zero.
NSGD_EPS = 1e-12
# optax.adam's (and torch.optim.Adam's) epsilon outside the square root.
ADAM_EPS = 1e-8


class HeldAdamState(NamedTuple):
    """Adam's moments and step count (`adam_held_normalizer`)."""

    count: jax.Array
    mu: Any
    nu: Any


def adam_held_normalizer(
    learning_rate: float, b1: float, b2: float, eps: float = ADAM_EPS
) -> optax.GradientTransformation:
    """Adam (optax.adam's values exactly) whose normalizer is held constant under differentiation.

    The update is `-learning_rate * mu_hat / stop_gradient(sqrt(nu_hat) + eps)`: the same numbers
    as Adam, so a run's images and first-order meta-gradient do not change; only the exact
    meta-gradient does, which sees each inner step as a preconditioned gradient step (its
    derivative `-lr * d mu_hat / (sqrt(nu_hat) + eps)`) instead of the sign-like map
    `g -> g / |g|`, whose derivative is large and erratic where |g| is small.
    """

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return HeldAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        mu_fix = 1 - b1 ** count.astype(jnp.float32)
        nu_fix = 1 - b2 ** count.astype(jnp.float32)

        def step(m, v):
            normalizer = jax.lax.stop_gradient(jnp.sqrt(v / nu_fix.astype(v.dtype)) + eps)
            return -learning_rate * (m / mu_fix.astype(m.dtype)) / normalizer

        return jax.tree.map(step, mu, nu), HeldAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def normalized_sgd(learning_rate: float) -> optax.GradientTransformation:
    """Per tensor, the update -learning_rate * g / rms(g) (stateless; rms over the tensor).

    Every tensor moves by `learning_rate` per coordinate in RMS, as Adam's first step does, and
    the update is a smooth function of the gradient (`NSGD_EPS` guards g = 0).
    """

    def update_fn(updates, state, params=None):
        del params

        def step(g):
            rms = jnp.sqrt(jnp.mean(jnp.square(g)) + NSGD_EPS**2)
            return -learning_rate * g / rms

        return jax.tree.map(step, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
