"""The inversion objective shared by DeepInversion, FastDFKD and CMI, for classifiers and (per
pixel) segmentation models.

loss = bn * (L_bn(teacher) - student_bn * L_bn(student)) + oh * L_oh + adv_weight * L_adv on
augmented synthetic images, the teacher in eval mode (its BatchNorm inputs captured), the student
in eval mode. `adv_weight` is an argument, not a constant, so switching the adversarial term on
after warmup does not recompile. The student's BN term (`student_bn` > 0) is the original
DeepInversion's: it is subtracted, pushing the student's batch statistics away from its running
ones.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.data import augment as augment_lib
from fastdfkd_jax.synthesis import baseline_augment, baseline_losses, losses

SYNTHESIS_AUGMENTS = ("crop", "jitter", "resized_crop")
# The kinds of `make_synthesis_augment` the student's KD batches may use.
KD_AUGMENTS = ("crop", "resized_crop")
ADVERSARIAL = ("kl", "jsdiv_clamped", "js")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The inversion objective for one teacher/student pair.

    Attributes:
      teacher: the frozen teacher module.
      student: the student module (for the adversarial term).
      augment: `(rng, images [B,H,W,C] in [0,1]) -> model inputs [B,H,W,C]` (normalized).
      bn: weight of the BN-statistics loss.
      oh: weight of the one-hot loss.
      bn_momentum: FastDFKD's momentum blend of BN statistics (0 disables it).
      adversarial: 'kl' (FastDFKD's and CMI's masked KL at T = 1), 'jsdiv_clamped' (the original
        DeepInversion's clamped `jsdiv`) or 'js' (the exact Jensen-Shannon divergence), the last
        two at `js_temperature`.
      js_temperature: temperature of the JS terms.
      student_bn: weight of the student's BN-statistics loss, subtracted inside the BN term
        (DeepInversion: 0.001; 0 skips the student's BN capture).

    """

    teacher: nn.Module
    student: nn.Module
    augment: Callable[[jax.Array, jax.Array], jax.Array]
    bn: float
    oh: float
    bn_momentum: float
    adversarial: str = "kl"
    js_temperature: float = 3.0
    student_bn: float = 0.0

    def __call__(
        self,
        images: jax.Array,
        targets: jax.Array,
        rng: jax.Array,
        teacher_vars,
        student_vars,
        bn_memory: losses.BNMemory,
        adv_weight: jax.Array,
    ) -> tuple[jax.Array, tuple[list[losses.BNRecord], dict]]:
        """Loss of `images` [B, H, W, C] in [0, 1] for `targets` int32 [B].

        Returns:
          (scalar loss, (BN records of the teacher pass, {'loss_bn', 'loss_oh', 'loss_adv'})).

        """
        inputs = self.augment(rng, images)
        teacher_logits, records = losses.capture_bn_inputs(
            self.teacher, teacher_vars, inputs, train=False
        )
        loss_bn = losses.bn_statistics_loss(records, bn_memory, self.bn_momentum)
        loss_oh = self.one_hot_term(teacher_logits, targets)
        if self.student_bn > 0:
            student_logits, student_records = losses.capture_bn_inputs(
                self.student, student_vars, inputs, train=False
            )
            loss_bn = loss_bn - self.student_bn * losses.bn_statistics_loss(student_records)
        else:
            student_logits = self.student.apply(student_vars, inputs, train=False)
        loss_adv = adversarial_term(
            self.adversarial, student_logits, teacher_logits, self.js_temperature
        )
        loss = self.bn * loss_bn + self.oh * loss_oh + adv_weight * loss_adv
        parts = {"loss_bn": loss_bn, "loss_oh": loss_oh, "loss_adv": loss_adv}
        return loss, (records, parts)

    def one_hot_term(self, teacher_logits: jax.Array, targets: jax.Array) -> jax.Array:
        """Cross-entropy of the teacher's logits [B, K] against the sampled targets [B]."""
        return losses.one_hot_loss(teacher_logits, targets)


@dataclasses.dataclass(frozen=True)
class DenseObjective(Objective):
    """The objective for a segmentation teacher: logits [B, H, W, K], every term per pixel.

    The BN-statistics term is unchanged; the adversarial term (`losses.adversarial_loss` or the
    JS divergence) and the KD loss reduce over the last axis and average over batch and pixels,
    so they are per pixel as they stand. The one-hot term has no sampled class map to aim at (a
    random class per pixel is noise, one per image ignores the layout): it is the cross-entropy
    of every pixel against the teacher's own argmax there (DAFL's one-hot loss, made per pixel),
    which sharpens the teacher's predictions; the sampled per-image `targets` are unused.
    """

    def one_hot_term(self, teacher_logits: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean over pixels of CE(teacher [B, H, W, K], argmax of the teacher) (a constant)."""
        del targets
        pseudo = jax.lax.stop_gradient(jnp.argmax(teacher_logits, axis=-1))
        return losses.one_hot_loss(teacher_logits, pseudo)


def adversarial_term(
    kind: str, student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
) -> jax.Array:
    """The adversarial loss `kind` (one of `ADVERSARIAL`) of [B, K] logits (or [B, H, W, K]:
    averaged per pixel, each pixel a row): a scalar to minimize.
    """
    num_classes = teacher_logits.shape[-1]
    student_logits = student_logits.reshape(-1, num_classes)
    teacher_logits = teacher_logits.reshape(-1, num_classes)
    if kind == "kl":
        return losses.adversarial_loss(student_logits, teacher_logits)
    if kind == "jsdiv_clamped":
        return -baseline_losses.jsdiv_clamped(student_logits, teacher_logits, temperature)
    if kind == "js":
        return -js_divergence(student_logits, teacher_logits, temperature)
    raise ValueError(f"Unknown adversarial loss {kind!r}; choose one of {ADVERSARIAL}.")


def js_divergence(logits_a: jax.Array, logits_b: jax.Array, temperature: float) -> jax.Array:
    """Mean over the batch of the Jensen-Shannon divergence of two [B, K] softmaxes at T."""
    log_p = jax.nn.log_softmax(losses.at_least_float32(logits_a) / temperature, -1)
    log_q = jax.nn.log_softmax(losses.at_least_float32(logits_b) / temperature, -1)
    log_m = jnp.log(0.5 * (jnp.exp(log_p) + jnp.exp(log_q)))
    kl_pm = jnp.sum(jnp.exp(log_p) * (log_p - log_m), -1)
    kl_qm = jnp.sum(jnp.exp(log_q) * (log_q - log_m), -1)
    return jnp.mean(0.5 * (kl_pm + kl_qm))


def init_bn_memory(
    objective: Objective, teacher_vars: dict, image_shape: Sequence[int]
) -> losses.BNMemory:
    """An empty BN memory shaped like the teacher's BatchNorm layers on `image_shape` images."""
    return teacher_bn_memory(objective.teacher, teacher_vars, image_shape)


def teacher_bn_memory(
    teacher: nn.Module, teacher_vars: dict, image_shape: Sequence[int]
) -> losses.BNMemory:
    """An empty BN memory shaped like `teacher`'s BatchNorm layers on `image_shape` images."""

    def records(x):
        return losses.capture_bn_inputs(teacher, teacher_vars, x, train=False)[1]

    return losses.init_bn_memory(jax.eval_shape(records, jnp.zeros((2, *image_shape))))


def make_synthesis_augment(
    cfg: ml_collections.ConfigDict, mean: Sequence[float], std: Sequence[float]
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`(rng, images in [0,1]) -> normalized inputs` for the synthesis loss (or KD), from `cfg`.

    `cfg.kind`: 'crop' (pad by `padding` and crop, optional flip: FastDFKD), 'jitter' (random
    roll by up to `jitter` pixels, optional flip: DeepInversion; with `flip_whole_batch` one roll
    and one coin flip for the whole batch, as the original's `jitter_and_flip`, else the flip per
    image) or 'resized_crop' (a random area fraction in `scale` resized back to the images' size,
    optional flip: the original's ImageNet pipeline).
    """
    check_choice("synthesis augment", cfg.kind, SYNTHESIS_AUGMENTS)
    mean, std = tuple(mean), tuple(std)

    if cfg.kind == "crop":
        return functools.partial(
            augment_lib.augment, padding=cfg.padding, flip=cfg.flip, mean=mean, std=std
        )
    if cfg.kind == "resized_crop":
        scale = tuple(cfg.scale)

        def resized_crop(rng, images):
            size = tuple(images.shape[1:3])
            return augment_lib.augment_resized_crop(
                rng, images, size=size, scale=scale, flip=cfg.flip, mean=mean, std=std
            )

        return resized_crop

    if cfg.flip_whole_batch:

        def jitter_whole_batch(rng, images):
            images = baseline_augment.jitter_and_flip(rng, images, cfg.jitter, cfg.flip)
            return augment_lib.normalize(images, mean, std)

        return jitter_whole_batch

    def jitter(rng, images):
        roll_rng, flip_rng = jax.random.split(rng)
        images = augment_lib.random_roll_jitter(roll_rng, images, cfg.jitter)
        if cfg.flip:
            images = augment_lib.random_flip(flip_rng, images)
        return augment_lib.normalize(images, mean, std)

    return jitter


def objective_from_config(
    s: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    student_bn: float = 0.0,
) -> Objective:
    """The objective that the `synthesis` block `s` describes for a dataset's `info`
    (`DenseObjective` for segmentation data sets); `student_bn`: DeepInversion's weight of the
    student's BN-statistics term (its block's key).
    """
    cls = DenseObjective if info.task == "segmentation" else Objective
    return cls(
        teacher=teacher,
        student=student,
        augment=make_synthesis_augment(s.augment, info.mean, info.std),
        bn=s.bn,
        oh=s.oh,
        bn_momentum=s.bn_momentum,
        adversarial=s.adversarial,
        js_temperature=s.js_temperature,
        student_bn=student_bn,
    )
