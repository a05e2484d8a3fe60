"""FastDFKD's inner optimizers other than the original's Adam, for the exact meta-gradient.

The exact meta-gradient differentiates through every inner step. Adam's per-coordinate
normalization `g / (sqrt(v) + eps)` is close to `sign(g)` in the first steps, whose derivative is
large and erratic (docs/benchmarks.md, "The exact meta-gradient"); these replace or hold it:

- `normalized_sgd`: each tensor moved by `-lr * g / rms(g)`, a smooth function of the gradient.

(Adam with its normalizer held constant under differentiation was tried and dropped: 62% on
digits against first-order's 98%; docs/benchmarks.md, "The exact meta-gradient".)
"""

import jax
import jax.numpy as jnp
import optax

# Guards the RMS in the normalized update of a tensor whose gradient is exactly zero.
NSGD_EPS = 1e-12


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
