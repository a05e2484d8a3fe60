"""Optimizers and learning-rate schedules built from a config block.

A config block has `name` ('sgd' | 'adam'), `learning_rate`, `schedule` ('constant' | 'cosine'),
`end_learning_rate` (cosine floor), `warmup_steps`, and for SGD `momentum`, `nesterov`, for Adam
`b1`, `b2`, and `weight_decay` (L2 added to the gradient, as PyTorch's SGD/Adam `weight_decay`).
"""

import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step, over `total_steps` steps."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {cfg.schedule!r}; choose one of {SCHEDULES}.")
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
    cfg: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
    """The optimizer described by `cfg`, with its schedule over `total_steps` steps."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}.")
    schedule = make_schedule(cfg, total_steps)
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
