"""Losses of the paper's other baselines (DeepInversion, DAFL, ZSKT, DFQ), as the original has them.

Pure functions, shapes in the docstrings. Each one is the formula of the original PyTorch code
(zju-vipa/Fast-Datafree), including its quirks, which the docstrings name:

- `jsdiv_clamped`: DeepInversion's adversarial divergence. Not the Jensen-Shannon divergence: the
  probabilities are clamped to [0.01, 0.99] and the KL terms run from the mixture to each side.
- `deepinversion_bn_loss`: DeepInversion's feature-statistics term, which also *subtracts* 0.001
  times the student's own BN-statistics term.
- `pseudo_label_loss`, `activation_loss`, `information_entropy_loss`: DAFL's one-hot loss on the
  teacher's own predictions, its activation loss on the teacher's penultimate features, and its
  information-entropy (class balance) loss; DFQ reuses the first and the last.
- `generative_adversarial_loss`: the unmasked -KL(teacher || student) that the generative
  baselines (ZSKT, DFQ) maximize.
- `capture_dense_inputs`: the input of every `nn.Dense` a model calls (the last one's input is the
  penultimate feature vector that DAFL's activation loss uses).
- `attention_map`, `attention_transfer_loss`: ZSKT's attention-transfer term (from the ZSKT paper;
  the FastDFKD repository's ZSKT has none), and `capture_stage_activations`, the activations it
  compares (the input of each network's last BatchNorm at every spatial resolution).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastdfkd_jax.models import probes
from fastdfkd_jax.synthesis import losses

# The original's clamp of the three distributions in `jsdiv` (datafree/criterions.py).
JSDIV_CLAMP = (0.01, 0.99)
# DeepInversion's weight of the student's BN-statistics term, subtracted inside the BN loss.
DEEPINV_STUDENT_BN = 0.001
# F.normalize's default epsilon (ZSKT's attention maps).
NORMALIZE_EPS = 1e-12


def jsdiv_clamped(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float,
    clamp: tuple[float, float] = JSDIV_CLAMP,
) -> jax.Array:
    """The original's `jsdiv`: 0.5 KL(M || P) + 0.5 KL(M || Q) on clamped distributions.

    P = softmax(student / T), Q = softmax(teacher / T), M = (P + Q) / 2 computed from the
    unclamped P and Q; then P, Q and M are each clamped to `clamp`, and

        jsdiv = 0.5 * sum(M * (log M - log P)) / B + 0.5 * sum(M * (log M - log Q)) / B

    (torch's `F.kl_div(log P, M, reduction='batchmean')`). The Jensen-Shannon divergence would be
    0.5 KL(P || M) + 0.5 KL(Q || M) without clamping; the clamp makes the gradient zero wherever a
    probability lies outside `clamp`.

    Args:
      student_logits: float [B, K].
      teacher_logits: float [B, K].
      temperature: T (DeepInversion uses 3).
      clamp: (low, high) of the clamp.

    Returns:
      float scalar (DeepInversion's loss uses its negative).

    """
    p = jax.nn.softmax(student_logits / temperature, axis=-1)
    q = jax.nn.softmax(teacher_logits / temperature, axis=-1)
    m = 0.5 * (p + q)
    low, high = clamp
    p, q, m = (jnp.clip(a, low, high) for a in (p, q, m))
    batch = student_logits.shape[0]
    kl_mp = jnp.sum(m * (jnp.log(m) - jnp.log(p))) / batch
    kl_mq = jnp.sum(m * (jnp.log(m) - jnp.log(q))) / batch
    return 0.5 * kl_mp + 0.5 * kl_mq


def deepinversion_bn_loss(
    teacher_records: Sequence[losses.BNRecord],
    student_records: Sequence[losses.BNRecord],
    student_weight: float = DEEPINV_STUDENT_BN,
) -> jax.Array:
    """DeepInversion's BN term: L_bn(teacher) - student_weight * L_bn(student).

    Each L_bn is `losses.bn_statistics_loss` (sum over the model's BN layers of the L2 norms of the
    mean and variance gaps, no momentum) on that model's own forward pass of the same augmented
    images, both models in eval mode. The original multiplies this whole difference by `bn`, so
    the student's term enters the total loss as `-bn * student_weight * L_bn(student)`.

    Args:
      teacher_records: `BNRecord`s of the teacher's pass (`losses.capture_bn_inputs`).
      student_records: `BNRecord`s of the student's pass.
      student_weight: the original's 0.001.

    Returns:
      float32 scalar.

    """
    return losses.bn_statistics_loss(list(teacher_records)) - student_weight * (
        losses.bn_statistics_loss(list(student_records))
    )


def pseudo_label_loss(teacher_logits: jax.Array) -> jax.Array:
    """DAFL's one-hot loss: mean cross-entropy of `teacher_logits` [B, K] against their own argmax.

    The targets are constants (no gradient through the argmax), as in the original.
    """
    targets = jnp.argmax(teacher_logits, axis=-1)
    return losses.one_hot_loss(teacher_logits, targets)


def activation_loss(features: jax.Array) -> jax.Array:
    """DAFL's activation loss: -mean(|features|) over every element of `features` [B, F]."""
    return -jnp.mean(jnp.abs(features))


def information_entropy_loss(teacher_logits: jax.Array) -> jax.Array:
    """DAFL's information-entropy loss: sum_k p_k log p_k of the batch-mean prediction.

    p = mean over the batch of softmax(teacher_logits) [K]; the loss is the NEGATIVE entropy of p,
    so minimizing it spreads the batch over the classes. [B, K] -> scalar.
    """
    p = jnp.mean(jax.nn.softmax(teacher_logits, axis=-1), axis=0)
    return jnp.sum(p * jnp.log(p))


def generative_adversarial_loss(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """-KL(softmax(teacher) || softmax(student)), batch mean, temperature 1, no agreement mask.

    What ZSKT and DFQ's generator minimizes (`-criterion(s_out, t_out)` with the original's
    `KLDiv()`). [B, K] logits -> scalar. (The original builds these baselines with the teacher in
    the student's place, which makes this term identically zero.)
    """
    return -jnp.mean(losses.kl_per_sample(student_logits, teacher_logits, 1.0))


def capture_dense_inputs(
    model: nn.Module, variables: Any, x: jax.Array, **kwargs
) -> tuple[jax.Array, list[jax.Array]]:
    """Applies `model` and records the input of every `nn.Dense` it calls, in call order.

    For the zoo's classifiers the last Dense is the classifier, so `inputs[-1]` [B, F] is the
    penultimate feature vector (global-average-pooled, after the last ReLU): the original's
    `teacher(x, return_features=True)[1]`.

    Args:
      model: a Flax module.
      variables: its variables.
      x: its input batch.
      **kwargs: passed to `model.apply` (e.g. `train=False`).

    Returns:
      (output, list of Dense inputs).

    """
    inputs: list[jax.Array] = []

    def record(call: probes.LayerCall) -> None:
        if call.kind == probes.DENSE:
            inputs.append(call.inputs)

    with probes.observe(record):
        out = model.apply(variables, x, **kwargs)
    return out, inputs


def attention_map(activations: jax.Array) -> jax.Array:
    """ZSKT's attention map: per sample, mean over channels of a^2, flattened, L2-normalized.

    Args:
      activations: float [B, H, W, C].

    Returns:
      float [B, H * W]; each row has unit L2 norm (rows of zeros stay zero, as torch's
      `F.normalize` with its eps 1e-12).

    """
    a = jnp.mean(jnp.square(activations), axis=-1).reshape(activations.shape[0], -1)
    norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    return a / jnp.maximum(norm, NORMALIZE_EPS)


def attention_transfer_loss(
    student_activations: Sequence[jax.Array], teacher_activations: Sequence[jax.Array]
) -> jax.Array:
    """ZSKT's attention-transfer term: sum over layers of mean((a(s) - a(t))^2).

    `a` is `attention_map`; the mean runs over the batch and the spatial positions. The ZSKT paper
    adds `beta * this` (beta 250) to the student's KD loss.

    Args:
      student_activations: per layer, float [B, H_l, W_l, C_s_l] (e.g. each block group's output).
      teacher_activations: per layer, float [B, H_l, W_l, C_t_l] (same spatial sizes).

    Returns:
      float scalar.

    """
    if len(student_activations) != len(teacher_activations):
        raise ValueError(
            f"attention transfer needs as many student layers ({len(student_activations)}) as "
            f"teacher layers ({len(teacher_activations)})."
        )
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(student_activations, teacher_activations, strict=True):
        total = total + jnp.mean(jnp.square(attention_map(s) - attention_map(t)))
    return total


def capture_stage_activations(
    model: nn.Module, variables: Any, x: jax.Array, **kwargs
) -> tuple[Any, list[jax.Array]]:
    """Applies `model`; returns (output, one activation [B, H_l, W_l, C_l] per spatial resolution).

    Per resolution (in the order first seen), the input of the LAST `nn.BatchNorm` called at that
    resolution: for a pre-activation WRN the output of each block group (what ZSKT's attention
    transfer compares: the next group's first BatchNorm, or the final one, reads it), for a plain
    CNN the last convolution's output of each stage. Only 4-D BatchNorm inputs count.

    Args:
      model: a Flax module with `nn.BatchNorm` layers.
      variables: its variables.
      x: its input batch [B, H, W, C].
      **kwargs: passed to `model.apply` (e.g. `train=True, mutable=['batch_stats']`).

    Returns:
      (whatever `model.apply` returns, list of activations, one per resolution).

    """
    by_size: dict[tuple[int, int], jax.Array] = {}

    def record(call: probes.LayerCall) -> None:
        a = call.inputs
        if call.kind == probes.BATCHNORM and a.ndim == 4:
            by_size[a.shape[1:3]] = a  # dicts keep first-seen order; the last call wins

    with probes.observe(record):
        out = model.apply(variables, x, **kwargs)
    if not by_size:
        raise ValueError(
            f"{type(model).__name__} has no 4-D BatchNorm input to take attention from."
        )
    return out, list(by_size.values())
