"""KD fine-tuning of a student with a new head, on the pool of a finished run.

The step is the run's own student step (`distill.student_step`: pool batch, crop/flip, KL at the
run's temperature against the teacher's logits) on a `HeadedClassifier`. The optimizer is the
run's `kd.optimizer` at `mars_head.lr_factor` times its rates, over `mars_head.epochs * kd.steps`
steps; in mode 'head' the body is frozen (eval-mode BatchNorm, no gradient, no weight decay), in
mode 'all' head and body learn as in distillation.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fastdfkd_jax import distill, optim
from fastdfkd_jax.state import ClassifierState
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import make_synthesis_augment

# 'head': only the head learns; 'all': head and body.
MODES = ("head", "all")


def total_steps(config: ml_collections.ConfigDict) -> int:
    """Fine-tuning steps of one arm: `mars_head.epochs` epochs of the run's `kd.steps`."""
    return config.mars_head.epochs * config.kd.steps


def make_optimizer(
    config: ml_collections.ConfigDict, mode: str, params: dict
) -> optax.GradientTransformation:
    """The run's KD optimizer at `lr_factor` times its rates; mode 'head' leaves `body` alone.

    Args:
      config: the run's config (`kd`, `mars_head`).
      mode: one of `MODES`.
      params: the `HeadedClassifier`'s `{'body': ..., 'head': ...}` (for the mode's labels).

    """
    if mode not in MODES:
        raise ValueError(f"Unknown fine-tuning mode {mode!r}; choose from {MODES}.")
    scaled = optim.scale_learning_rate(config.kd.optimizer, config.kd.batch_size)
    cfg = ml_collections.ConfigDict(scaled.to_dict())  # a copy: the run's config stays as it is
    cfg.learning_rate = scaled.learning_rate * config.mars_head.lr_factor
    cfg.end_learning_rate = scaled.end_learning_rate * config.mars_head.lr_factor
    tx = optim.make_optimizer(cfg, total_steps(config))
    if mode == "all":
        return tx
    labels = {
        "body": jax.tree.map(lambda _: "frozen", params["body"]),
        "head": jax.tree.map(lambda _: "train", params["head"]),
    }
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def finetune_step(
    state: ClassifierState,
    pool: pool_lib.Pool,
    teacher_vars: dict,
    rng: jax.Array,
    *,
    batch_size: int,
    **step_options,
) -> tuple[ClassifierState, dict]:
    """One KD step on `batch_size` images drawn from `pool` (pure; `step_options`: those of
    `distill.student_step`). Returns `(state, {'kd_loss'})`.
    """
    sample_rng, aug_rng = jax.random.split(rng)
    images = pool_lib.sample(pool, sample_rng, batch_size)
    return distill.student_step(state, images, teacher_vars, aug_rng, **step_options)


def make_step(
    config: ml_collections.ConfigDict, model, teacher, tx, info
) -> Callable[[ClassifierState, pool_lib.Pool, dict, jax.Array], tuple[ClassifierState, dict]]:
    """`finetune_step` jitted with the run's KD settings for `model` and `tx`."""
    return jax.jit(
        functools.partial(
            finetune_step,
            batch_size=config.kd.batch_size,
            student=model,
            teacher=teacher,
            tx=tx,
            temperature=config.kd.temperature,
            augment=make_synthesis_augment(config.kd.augment, info.mean, info.std),
        )
    )


def finetune(
    step: Callable,
    variables: dict,
    tx: optax.GradientTransformation,
    pool: pool_lib.Pool,
    teacher_vars: dict,
    rng: jax.Array,
    steps: int,
) -> tuple[dict, np.ndarray]:
    """Runs `steps` steps of `step` (from `make_step`) from `variables`.

    Returns:
      `(variables, kd_loss [steps])`; step `i` draws its batch and augmentation from
      `fold_in(rng, i)`.

    """
    params = jax.tree.map(jnp.asarray, variables["params"])
    state = ClassifierState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
    )
    losses = []
    for i in range(steps):
        state, metrics = step(state, pool, teacher_vars, jax.random.fold_in(rng, i))
        losses.append(metrics["kd_loss"])
    return state.variables, np.asarray(jax.device_get(losses), np.float64)
