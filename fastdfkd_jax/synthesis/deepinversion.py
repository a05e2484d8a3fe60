"""DeepInversion: optimize the pixels of each batch from noise, no generator (the baseline).

As the original's DeepInvSyntheiszer: pixels live in normalized space (u = (x - mean) / std,
initialized N(0, 1)) and are optimized with Adam for `steps` steps (2000 for DeepInv-2k); after
every step they are clipped so that x stays in [0, 1]. `return_iterate` 'best' returns the
lowest-loss iterate (the original intends it, but its `best_inputs` aliases the live tensor, so it
returns 'last': the pixels after the final update and clip). `synthesize` runs all steps as one
`lax.scan`; with `chunk_steps > 0`, `compile_call` instead drives the pieces `begin` / `advance` /
`finish` from the host, the steps in jitted, unrolled chunks, which is much faster on XLA:CPU (see
`steps.py`, `base.ChunkedSynthesis`). The objective provides the jitter and flip and the loss
(with the student's BN term and the clamped `jsdiv`). The synthesizer state is empty. `build` makes
the synthesizer from a run config.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fastdfkd_jax import backend, sharding
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.data import augment
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis.base import (
    ChunkedSynthesis,
    adv_start_epoch,
    check_chunk_steps,
    from_block,
    uniform_targets,
    validate_chunk_steps,
)
from fastdfkd_jax.synthesis.baseline_losses import DEEPINV_STUDENT_BN
from fastdfkd_jax.synthesis.objective import Objective, init_bn_memory, objective_from_config
from fastdfkd_jax.synthesis.steps import run_steps

RETURN_ITERATES = ("best", "last")


@flax.struct.dataclass
class DeepInversionCarry:
    """The state of one batch's pixel optimization between steps.

    Attributes:
      u: float32 [B, H, W, C], the pixels in normalized space.
      opt_state: the Adam state of `u`.
      best_loss: scalar, the lowest loss seen; best_images: [B, H, W, C] in [0, 1], its images.
      targets: int32 [B]; step_rng: the key that step k folds its index into.
      first_loss, last_loss: scalars; last_parts: the last step's loss terms; last_stats: its
        teacher BN (means, vars), for the momentum memory.
    """

    u: jax.Array
    opt_state: Any
    best_loss: jax.Array
    best_images: jax.Array
    targets: jax.Array
    step_rng: jax.Array
    first_loss: jax.Array
    last_loss: jax.Array
    last_parts: dict
    last_stats: tuple


@dataclasses.dataclass(frozen=True)
class DeepInversionSynthesizer(ChunkedSynthesis):
    """Attributes:
    objective: the inversion objective (its augmentation: jitter and flip).
    num_classes: K, for the random targets.
    batch_size: B.
    image_shape: (H, W, C).
    steps: optimization steps per batch (>= 1).
    lr: Adam learning rate on normalized pixels.
    betas: Adam (b1, b2).
    mean, std: the dataset normalization (C floats each).
    batch_sharding: how to split the pixels, targets and images over devices (None: XLA decides).
    adv, adv_start_epoch: the adversarial weight, from epoch `adv_start_epoch` on (0 before).
    chunk_steps: 0 compiles a call as one function; > 0 runs the steps as host-driven, unrolled
      chunks of this many steps (it must divide `steps`).
    return_iterate: 'best' (the lowest-loss iterate, a fix) or 'last' (the original's result).
    """

    objective: Objective
    num_classes: int
    batch_size: int
    image_shape: tuple[int, int, int]
    steps: int
    lr: float
    betas: tuple[float, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_sharding: jax.sharding.Sharding | None = None
    adv: float = 0.0
    adv_start_epoch: int = 0
    chunk_steps: int = 0
    return_iterate: str = "best"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"g_steps (DeepInversion steps) must be >= 1, got {self.steps}.")
        check_chunk_steps(self.chunk_steps, self.steps)
        check_return_iterate(self.return_iterate)

    def init(self, rng: jax.Array) -> dict:
        del rng
        return {}

    @staticmethod
    def call_keys(rng: jax.Array) -> jax.Array:
        """The call's keys [3]: initial pixels, targets, steps."""
        return jax.random.split(rng, 3)

    def draw_targets(self, rng: jax.Array) -> jax.Array:
        """The call's target classes int32 [B], uniform (see `PoolSynthesis.draw_targets`)."""
        return uniform_targets(self.call_keys(rng)[1], self.batch_size, self.num_classes)

    def begin(self, state: dict, rng: jax.Array, teacher_vars: dict) -> DeepInversionCarry:
        """Noise pixels and random targets for one batch: the carry before step 0."""
        del state
        u_rng, _, step_rng = self.call_keys(rng)  # the second draws the targets
        # Made inside the call: split along the batch explicitly (see FastSynthesizer.synthesize).
        u0 = sharding.constrain_batch(
            jax.random.normal(u_rng, (self.batch_size, *self.image_shape)), self.batch_sharding
        )
        targets = sharding.constrain_batch(self.draw_targets(rng), self.batch_sharding)
        memory = init_bn_memory(self.objective, teacher_vars, self.image_shape)
        zero = jnp.zeros((), u0.dtype)
        return DeepInversionCarry(
            u=u0,
            opt_state=self.optimizer().init(u0),
            best_loss=jnp.asarray(jnp.inf, u0.dtype),
            best_images=jnp.zeros_like(u0),
            targets=targets,
            step_rng=step_rng,
            first_loss=zero,
            last_loss=zero,
            last_parts={"loss_bn": zero, "loss_oh": zero, "loss_adv": zero},
            last_stats=(memory.means, memory.vars),
        )

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.lr, b1=self.betas[0], b2=self.betas[1])

    def advance(
        self,
        carry: DeepInversionCarry,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        adv_weight: jax.Array,
        first_step: jax.Array | int,
        num_steps: int,
        unroll: bool = False,
    ) -> DeepInversionCarry:
        """Steps `first_step .. first_step + num_steps - 1` of the pixel optimization."""
        low = augment.normalize(jnp.zeros(self.image_shape[-1:]), self.mean, self.std)
        high = augment.normalize(jnp.ones(self.image_shape[-1:]), self.mean, self.std)
        tx = self.optimizer()

        def loss_fn(u, k):
            images = augment.denormalize(u, self.mean, self.std)
            loss, (records, parts) = self.objective(
                images,
                carry.targets,
                jax.random.fold_in(carry.step_rng, k),
                teacher_vars,
                student_vars,
                bn_memory,
                adv_weight,
            )
            return loss, (images, records, parts)

        def body(c, k):
            (loss, (images, records, parts)), grad = jax.value_and_grad(loss_fn, has_aux=True)(
                c.u, k
            )
            better = loss < c.best_loss
            updates, opt_state = tx.update(grad, c.opt_state, c.u)
            c = c.replace(
                u=jnp.clip(optax.apply_updates(c.u, updates), low, high),
                opt_state=opt_state,
                best_images=jnp.where(better, images, c.best_images),
                best_loss=jnp.where(better, loss, c.best_loss),
                first_loss=jnp.where(k == 0, loss, c.first_loss),
                last_loss=loss,
                last_parts=parts,
                last_stats=(tuple(r.mean for r in records), tuple(r.var for r in records)),
            )
            return c, None

        carry, _ = run_steps(body, carry, num_steps, unroll=unroll, first_step=first_step)
        return carry

    def finish(
        self, state: dict, carry: DeepInversionCarry, bn_memory: losses.BNMemory
    ) -> tuple[dict, losses.BNMemory, jax.Array, dict]:
        """The returned images, the BN memory update and the metrics of a finished batch."""
        if self.objective.bn_momentum > 0:
            bn_memory = losses.update_bn_memory(
                bn_memory, *carry.last_stats, self.objective.bn_momentum
            )
        metrics = dict(
            synth_loss_first=carry.first_loss,
            synth_loss_last=carry.last_loss,
            synth_best_loss=carry.best_loss,
            **{f"synth_{k}": v for k, v in carry.last_parts.items()},
        )
        if self.return_iterate == "best":
            images = carry.best_images
        else:  # the pixels after the last update and clip, never evaluated by the loss
            images = augment.denormalize(carry.u, self.mean, self.std)
        return state, bn_memory, jnp.clip(images, 0.0, 1.0), metrics


def check_return_iterate(value: str) -> None:
    check_choice("synthesis.deepinversion.return_iterate", value, RETURN_ITERATES)


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.deepinversion`: DeepInversion's own keys (`DeepInversionSynthesizer`'s fields and
    the student's BN weight), at the original's DeepInv-2k values (`methods.deepinv`).
    """
    return ml_collections.ConfigDict(
        dict(
            steps=2000,  # pixel-optimization steps per batch
            lr=0.1,  # Adam's rate on the normalized pixels
            betas=(0.5, 0.99),
            # Host-driven, unrolled chunks of this many steps ('0': one compiled lax.scan over all
            # steps). 'auto' (backend.py): chunks of <= 10 steps on CPU, one scan elsewhere.
            chunk_steps=backend.AUTO,
            # The loss subtracts bn * student_bn * (the student's own BN-statistics loss): the
            # original's 0.001 (baseline_losses.deepinversion_bn_loss). 0: no student BN term.
            student_bn=DEEPINV_STUDENT_BN,
            # 'best' returns each batch's lowest-loss iterate (a fix: the original means to, but its
            # best_inputs aliases the live pixels) or 'last', what the original returns: the pixels
            # after the last update and clip.
            return_iterate="best",
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.deepinversion` block (before any compute; 'auto' always fits)."""
    validate_chunk_steps(s.deepinversion, "synthesis.deepinversion")
    check_return_iterate(s.deepinversion.return_iterate)


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> DeepInversionSynthesizer:
    """The DeepInversionSynthesizer of a distillation run's config (`config.synthesis` and its
    `deepinversion` block; `chunk_steps` resolved: `backend.resolve`).
    """
    s, block = config.synthesis, config.synthesis.deepinversion
    return from_block(
        DeepInversionSynthesizer,
        block,
        objective=objective_from_config(s, info, teacher, student, block.student_bn),
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        image_shape=tuple(info.image_shape),
        mean=tuple(info.mean),
        std=tuple(info.std),
        batch_sharding=batch_sharding,
        adv=s.adv,
        adv_start_epoch=adv_start_epoch(s.adv_start, config.warmup),
    )
