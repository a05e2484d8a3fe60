"""The study's MLP trainer: many networks at once for the curves, one at a time for the clock.

``train_curves`` trains ``[lrs, seeds]`` copies of one MLP together (``jax.vmap``; the learning
rate lives in the optimizer state through ``optax.inject_hyperparams``, so one compilation serves
the whole grid) and records the validation and test loss after every epoch. ``epoch_seconds``
times single-network epochs: vectorized runs say nothing about one network's wall-clock. The
seed fixes the batch order, the same for every init and learning rate.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spline.init import MLP
from spline.preprocess import Prepared

# Plain SGD (no momentum) and Adam with optax's defaults; the learning rate is the only knob.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
}


def check_optimizer(name: str) -> None:
    """Raise ValueError naming ``name`` and the choices if it is not in ``OPTIMIZERS``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")


def _loss(classification: bool, out: jax.Array, target: jax.Array) -> jax.Array:
    if classification:
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(out, target))
    return jnp.mean(jnp.square(out - target))


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Jitted pieces for one network shape, loss and optimizer.

    Attributes:
      init_state: ``(params, lr) -> opt_state``.
      epoch: ``(params, opt_state, z, t, order [steps, batch]) -> (params, opt_state)``, one
        pass of full batches in ``order``.
      loss: ``(params, z, t) -> scalar``.
      order: ``(key, n) -> [steps, batch]`` shuffled row indices of an epoch (``n`` static).
      grid_init_state, grid_epoch, grid_loss: the same over ``[lrs, seeds]`` networks (the
        learning rate [L], orders [S, steps, batch] and data shared as ``train_curves`` needs).

    """

    init_state: Callable
    epoch: Callable
    loss: Callable
    order: Callable
    grid_init_state: Callable
    grid_epoch: Callable
    grid_loss: Callable


def make_trainer(
    features: Sequence[int], classification: bool, batch: int, optimizer: str
) -> Trainer:
    """Build the ``Trainer`` of ``MLP(features)`` with ``optimizer`` at batch size ``batch``."""
    check_optimizer(optimizer)
    mlp = MLP(features=tuple(features))
    make_opt = optax.inject_hyperparams(OPTIMIZERS[optimizer])
    opt = make_opt(learning_rate=0.0)  # update() reads the learning rate from the state

    def init_state(params, lr):
        return make_opt(learning_rate=lr).init(params)

    def loss_fn(params, z, t):
        return _loss(classification, mlp.apply({"params": params}, z), t)

    def epoch(params, opt_state, z, t, order):
        def step(carry, idx):
            p, s = carry
            grads = jax.grad(loss_fn)(p, z[idx], t[idx])
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), order)
        return params, opt_state

    def order(key, n):
        steps = n // batch
        return jax.random.permutation(key, n)[: steps * batch].reshape(steps, batch)

    seed_epoch = jax.vmap(epoch, in_axes=(0, 0, None, None, 0))
    return Trainer(
        init_state=jax.jit(init_state),
        epoch=jax.jit(epoch),
        loss=jax.jit(loss_fn),
        order=jax.jit(order, static_argnums=1),
        grid_init_state=jax.jit(jax.vmap(jax.vmap(init_state, (0, None)), (0, 0))),
        grid_epoch=jax.jit(jax.vmap(seed_epoch, in_axes=(0, 0, None, None, None))),
        grid_loss=jax.jit(jax.vmap(jax.vmap(loss_fn, (0, None, None)), (0, None, None))),
    )


def _finite(curve: np.ndarray) -> np.ndarray:
    # A diverged run (NaN or inf) never reaches a target: inf everywhere it is not finite.
    return np.where(np.isfinite(curve), curve, np.inf)


def train_curves(
    trainer: Trainer,
    params: dict,
    lrs: Sequence[float],
    prep: Prepared,
    epochs: int,
    keys: jax.Array,
) -> tuple[np.ndarray, np.ndarray]:
    """Train every (learning rate, seed) pair from its seed's start; losses after each epoch.

    Args:
      trainer: from ``make_trainer``.
      params: starting parameters stacked over seeds (leading axis [S]).
      lrs: [L] learning rates.
      prep: the standardized splits.
      epochs: passes over the training rows.
      keys: [S] batch-order keys (epoch e uses ``fold_in(key, e)``).

    Returns:
      ``(val, test)``, each [L, S, epochs + 1] float64 (index 0: the start), inf where a run
      diverged.

    """
    lr = jnp.asarray(lrs, jnp.float32)
    n_lr = lr.shape[0]
    # [L, S, ...]: every learning rate starts from the same per-seed parameters.
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_lr, *a.shape)), params)
    state = trainer.grid_init_state(params, lr)
    z, t = jnp.asarray(prep.z_train), jnp.asarray(prep.t_train)
    splits = [(jnp.asarray(prep.z_val), jnp.asarray(prep.t_val))]
    splits.append((jnp.asarray(prep.z_test), jnp.asarray(prep.t_test)))
    n = z.shape[0]

    def evaluate(p):
        return [np.asarray(trainer.grid_loss(p, zs, ts), np.float64) for zs, ts in splits]

    curves = [evaluate(params)]
    for e in range(epochs):
        # Orders are per seed ([S, steps, batch]), shared across learning rates.
        orders = jnp.stack([trainer.order(jax.random.fold_in(k, e), n) for k in keys])
        params, state = trainer.grid_epoch(params, state, z, t, orders)
        curves.append(evaluate(params))
    val = _finite(np.stack([c[0] for c in curves], -1))
    test = _finite(np.stack([c[1] for c in curves], -1))
    return val, test


def epoch_seconds(
    trainer: Trainer, params: dict, lr: float, prep: Prepared, epochs: int, key: jax.Array
) -> list[float]:
    """Wall-clock seconds of ``epochs`` single-network training epochs (compiled beforehand).

    The batch orders are drawn before the clock starts; each epoch is timed to
    ``block_until_ready``. Evaluation is not timed.
    """
    z, t = jnp.asarray(prep.z_train), jnp.asarray(prep.t_train)
    state = trainer.init_state(params, jnp.float32(lr))
    orders = [trainer.order(jax.random.fold_in(key, e), z.shape[0]) for e in range(epochs)]
    jax.block_until_ready(trainer.epoch(params, state, z, t, orders[0]))  # compile, untimed
    out = []
    for order in orders:
        start = time.perf_counter()
        params, state = trainer.epoch(params, state, z, t, order)
        jax.block_until_ready(params)
        out.append(time.perf_counter() - start)
    return out
