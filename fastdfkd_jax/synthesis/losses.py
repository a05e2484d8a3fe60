"""Synthesis and distillation losses: pure functions, shapes in the docstrings.

- `capture_bn_inputs`: runs a model and records the *input* of every BatchNorm it calls, with
  that layer's running statistics, through a layer probe (`models.probes`: linen's
  `nn.intercept_methods`, or an NNX model's adapter; no change to model code).
- `bn_statistics_loss`: DeepInversion's feature-statistics loss, with the optional momentum blend of
  FastDFKD (`bn_momentum`), whose stored statistics are explicit state (`BNMemory`).
- `one_hot_loss`, `adversarial_loss`, `kd_loss`: cross-entropy on sampled targets, the masked
  disagreement term, and the distillation KL at temperature T.

Models may compute in bfloat16 (the `bfloat16` precision policy); every loss promotes its inputs
to float32 first (`at_least_float32`), so softmaxes, logs and sums are float32 under every policy.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fastdfkd_jax.models import probes


class BNRecord(NamedTuple):
    """One BatchNorm layer seen during a forward pass.

    Attributes:
      mean: float32 [C], the batch mean of the layer's input over all axes but the last.
      var: float32 [C], the biased batch variance of the same.
      running_mean: float32 [C], the layer's stored running mean.
      running_var: float32 [C], the layer's stored running variance.

    """

    mean: jax.Array
    var: jax.Array
    running_mean: jax.Array
    running_var: jax.Array


class BNMemory(NamedTuple):
    """FastDFKD's momentum statistics: one (mean, var) per teacher BN layer, plus a readiness flag.

    Attributes:
      means: tuple of float32 [C_l], one per BN layer in call order.
      vars: tuple of float32 [C_l].
      ready: bool scalar; False until the first synthesis call has stored statistics (before that
        the loss compares the current statistics alone, as the original does).

    """

    means: tuple
    vars: tuple
    ready: jax.Array


def at_least_float32(x: jax.Array) -> jax.Array:
    """`x` promoted to float32 when narrower (bfloat16 logits or activations), else unchanged."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance, float32 [C], of `x` [..., C] over all but the last
    axis.
    """
    x = at_least_float32(x)
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    return mean, var


def capture_bn_inputs(
    model: nn.Module, variables: Any, x: jax.Array, **kwargs
) -> tuple[jax.Array, list[BNRecord]]:
    """Applies `model` and records every BatchNorm's input statistics and running statistics.

    Args:
      model: a Flax module whose BatchNorms are `nn.BatchNorm` (or an NNX model's adapter,
        `models.nnx_adapter`, with `nnx.BatchNorm`s).
      variables: its variables (with `batch_stats`).
      x: the input batch, e.g. float32 [B, H, W, C].
      **kwargs: passed to `model.apply` (e.g. `train=False`).

    Returns:
      (output, records), records in call order.

    """
    records: list[BNRecord] = []

    def record(call: probes.LayerCall) -> None:
        if call.kind == probes.BATCHNORM:
            records.append(bn_record(call))

    with probes.observe(record):
        out = model.apply(variables, x, **kwargs)
    return out, records


def bn_record(call: probes.LayerCall) -> BNRecord:
    """The `BNRecord` of a BatchNorm's call: its input's batch moments and running statistics."""
    mean, var = batch_moments(call.inputs)
    return BNRecord(mean, var, call.running_mean, call.running_var)


def init_bn_memory(records: list[BNRecord]) -> BNMemory:
    """An empty memory shaped like `records` (zeros, not ready)."""
    return BNMemory(
        means=tuple(jnp.zeros_like(r.mean) for r in records),
        vars=tuple(jnp.zeros_like(r.var) for r in records),
        ready=jnp.zeros((), bool),
    )


def bn_statistics_loss(
    records: list[BNRecord], memory: BNMemory | None = None, momentum: float = 0.0
) -> jax.Array:
    """Sum over layers of ||v - running_var||_2 + ||m - running_mean||_2 (L2 norms, not squared).

    With `momentum` > 0 and a ready `memory`, the current statistics are first blended with the
    stored ones: m <- (1 - momentum) * m + momentum * stored_m (the same for v).

    Args:
      records: from `capture_bn_inputs`.
      memory: stored statistics (or None).
      momentum: the blend weight of the stored statistics (FastDFKD's `bn_mmt`, 0.9).

    Returns:
      float32 scalar.

    """
    total = jnp.zeros((), jnp.float32)
    for i, r in enumerate(records):
        mean, var = r.mean, r.var
        if memory is not None and momentum > 0:
            blend_mean = (1.0 - momentum) * mean + momentum * memory.means[i]
            blend_var = (1.0 - momentum) * var + momentum * memory.vars[i]
            mean = jnp.where(memory.ready, blend_mean, mean)
            var = jnp.where(memory.ready, blend_var, var)
        total = (
            total + jnp.linalg.norm(var - r.running_var) + jnp.linalg.norm(mean - r.running_mean)
        )
    return total


def update_bn_memory(memory: BNMemory, means: tuple, variances: tuple, momentum: float) -> BNMemory:
    """Stored <- momentum * stored + (1 - momentum) * current; the first update stores current.

    Args:
      memory: the stored statistics.
      means, variances: the current statistics, one float32 [C_l] per layer (from the last inner
        step of a synthesis call, as the original's hooks keep them).
      momentum: FastDFKD's `bn_mmt`.

    """

    def blend(stored, current):
        current = jax.lax.stop_gradient(current)
        return jnp.where(memory.ready, momentum * stored + (1.0 - momentum) * current, current)

    return BNMemory(
        means=tuple(blend(s, m) for s, m in zip(memory.means, means, strict=True)),
        vars=tuple(blend(s, v) for s, v in zip(memory.vars, variances, strict=True)),
        ready=jnp.ones((), bool),
    )


def one_hot_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy of `logits` [B, K] against integer `targets` [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(at_least_float32(logits), targets).mean()


def kl_per_sample(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
) -> jax.Array:
    """KL(teacher_T || student_T) per sample, [B], softmaxes at `temperature` (no T^2 factor)."""
    student_logits, teacher_logits = (
        at_least_float32(student_logits),
        at_least_float32(teacher_logits),
    )
    log_student = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    teacher = jax.nn.softmax(teacher_logits / temperature, axis=-1)
    return optax.losses.kl_divergence(log_student, teacher)


def adversarial_loss(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """-mean(mask * KL(teacher || student)) at temperature 1, [B, K] logits -> scalar.

    The mask keeps only samples on which student and teacher agree (same argmax): the generator is
    pushed to find inputs where the student still agrees but its distribution differs most.
    """
    agree = jnp.argmax(student_logits, -1) == jnp.argmax(teacher_logits, -1)
    kl = kl_per_sample(student_logits, teacher_logits, 1.0)
    return -jnp.mean(jnp.where(agree, kl, 0.0))


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """Distillation loss: mean over the batch of KL(teacher_T || student_T) * T^2, scalar."""
    kl = kl_per_sample(student_logits, teacher_logits, temperature)
    return jnp.mean(kl) * temperature**2
