"""Optimizers and learning-rate schedules built from a config block.

A config block has `name` ('sgd' | 'adam'), `learning_rate`, `schedule` ('constant' | 'cosine'),
`end_learning_rate` (cosine floor), `warmup_steps`, and for SGD `momentum`, `nesterov`, for Adam
`b1`, `b2`, and `weight_decay` (L2 added to the gradient, as PyTorch's SGD/Adam `weight_decay`).
Its rates are for the job's global batch; `lr_scaling` ('none' | 'linear' against
`reference_batch_size`) says how they change with it (`scale_learning_rate`).
"""

import ml_collections
import optax
from absl import logging

from fastdfkd_jax.checks import check_choice

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
LR_SCALINGS = ("none", "linear")


def validate(cfg: ml_collections.ConfigDict, name: str) -> None:
    """Raises a ValueError naming `name` (e.g. 'kd.optimizer') for an unknown choice in `cfg`."""
    for key, allowed in (("name", OPTIMIZERS), ("schedule", SCHEDULES)):
        check_choice(f"{name}.{key}", cfg[key], allowed)
    check_choice("lr_scaling", cfg.get("lr_scaling", "none"), LR_SCALINGS)


def make_schedule(
    cfg: ml_collections.ConfigDict, total_steps: int, steps_per_change: int = 1
) -> optax.Schedule:
    """Learning rate as a function of the step, over `total_steps` steps.

    `steps_per_change` > 1 holds the rate for blocks of that many steps, each at the rate of its
    first step: the per-epoch scheduler step of PyTorch code (`CosineAnnealingLR` stepped once an
    epoch, T_max = the epochs) with `steps_per_change` = the steps of an epoch.
    """
    if steps_per_change < 1:
        raise ValueError(f"steps_per_change must be >= 1, got {steps_per_change}.")
    schedule = _per_step_schedule(cfg, total_steps)
    if steps_per_change == 1:
        return schedule
    return lambda count: schedule((count // steps_per_change) * steps_per_change)


def _per_step_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    check_choice("schedule", cfg.schedule, SCHEDULES)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.learning_rate)
    else:
        decay_steps = max(total_steps - cfg.warmup_steps, 1)
        alpha = cfg.end_learning_rate / cfg.learning_rate if cfg.learning_rate else 0.0
        main = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps, alpha=alpha)
    if cfg.warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])


def make_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int, steps_per_change: int = 1
) -> optax.GradientTransformation:
    """The optimizer described by `cfg`, with its schedule over `total_steps` steps
    (`make_schedule`).
    """
    check_choice("optimizer", cfg.name, OPTIMIZERS)
    schedule = make_schedule(cfg, total_steps, steps_per_change)
    # PyTorch-style weight decay: added to the gradient before momentum.
    decay = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
    if cfg.name == "sgd":
        update = optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    else:
        update = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2)
    return optax.chain(*decay, update)


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
    """A complete optimizer block with neutral defaults; configs override what they need."""
    cfg = ml_collections.ConfigDict(
        dict(
            name="sgd",
            learning_rate=0.1,
            schedule="cosine",
            end_learning_rate=0.0,
            warmup_steps=0,
            momentum=0.9,
            nesterov=False,
            b1=0.9,
            b2=0.999,
            weight_decay=0.0,
        )
    )
    cfg.update(overrides)
    return cfg


def scale_learning_rate(
    opt_cfg: ml_collections.ConfigDict, global_batch: int
) -> ml_collections.ConfigDict:
    """The optimizer block with its learning rates scaled for `global_batch` by its rule.

    `opt_cfg.lr_scaling`: 'none' (use `learning_rate` as given, for any batch) or 'linear'
    (`learning_rate * global_batch / reference_batch_size`, and the same factor on
    `end_learning_rate`: Goyal et al.'s rule for SGD). The config is not mutated.
    """
    rule = opt_cfg.get("lr_scaling", "none")
    check_choice("lr_scaling", rule, LR_SCALINGS)
    if rule == "none":
        return opt_cfg
    reference = opt_cfg.reference_batch_size
    if reference < 1:
        raise ValueError(f"lr_scaling='linear' needs reference_batch_size >= 1, got {reference}.")
    factor = global_batch / reference
    scaled = ml_collections.ConfigDict(opt_cfg.to_dict())
    scaled.learning_rate = opt_cfg.learning_rate * factor
    scaled.end_learning_rate = opt_cfg.end_learning_rate * factor
    logging.info(
        "Learning rate %g scaled by %d / %d to %g.",
        opt_cfg.learning_rate,
        global_batch,
        reference,
        scaled.learning_rate,
    )
    return scaled
