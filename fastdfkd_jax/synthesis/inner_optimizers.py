"""FastDFKD's inner optimizers other than the original's Adam, for the exact meta-gradient.

The exact meta-gradient differentiates through every inner step. Adam's per-coordinate
normalization `g / (sqrt(v) + eps)` is close to `sign(g)` in the first steps, whose derivative is
large and erratic (docs/benchmarks.md, "The exact meta-gradient"); these replace or hold it:

- `normalized_sgd`: each tensor moved by `-lr * g / rms(g)`, a smooth function of the gradient.

`generator_and_latent_optimizer` makes the inner optimizer of a FastDFKD call, either kind.

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


# Inner optimizers: 'adam' (the original's) and 'nsgd' (`normalized_sgd`).
KINDS = ("adam", "nsgd")


def generator_and_latent_optimizer(
    kind: str,
    lr_g: float,
    lr_z: float,
    betas: tuple[float, float],
    eps_root: float = 0.0,
) -> optax.GradientTransformation:
    """The inner optimizer over {'g': generator params, 'z': latents} at rates lr_g and lr_z.

    'adam': Adam with `betas` (and `eps_root`, which only a differentiated Adam needs); 'nsgd':
    `normalized_sgd`.
    """

    def make(lr):
        if kind == "nsgd":
            return normalized_sgd(lr)
        return optax.adam(lr, b1=betas[0], b2=betas[1], eps_root=eps_root)

    return optax.multi_transform(
        {"g": make(lr_g), "z": make(lr_z)},
        lambda inner: {"g": jax.tree.map(lambda _: "g", inner["g"]), "z": "z"},
    )
