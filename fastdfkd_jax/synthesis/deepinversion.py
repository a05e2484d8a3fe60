"""DeepInversion: optimize the pixels of each batch from noise, no generator (the baseline).

Pixels live in normalized space (u = (x - mean) / std, initialized N(0, 1)) and are optimized with
Adam for `steps` steps (2000 for DeepInv-2k); after every step they are clipped so that x stays in
[0, 1]. The lowest-loss iterate is returned. `synthesize` runs all steps as one `lax.scan`; with
`chunk_steps > 0`, `compile_call` instead drives the pieces `begin` / `advance` / `finish` from the
host, the steps in jitted, unrolled chunks, which is much faster on XLA:CPU (see `steps.py`). The
objective's augmentation provides the random roll jitter and flip. `synthesize` has the signature
of `FastSynthesizer.synthesize`, with an empty synthesizer state. `build` makes the synthesizer
from a run config.
"""

import dataclasses
import time
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from fastdfkd_jax import backend, compilation, sharding
from fastdfkd_jax.data import augment
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.base import PoolSynthesis, SynthesisCall, synthesis_out_shardings
from fastdfkd_jax.synthesis.objective import Objective, init_bn_memory, objective_from_config
from fastdfkd_jax.synthesis.steps import run_steps


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
class DeepInversionSynthesizer(PoolSynthesis):
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
    adv, adv_warmup: the adversarial weight, from epoch `adv_warmup` on (0 before).
    chunk_steps: 0 compiles a call as one function; > 0 runs the steps as host-driven, unrolled
      chunks of this many steps (it must divide `steps`).
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
    adv_warmup: int = 0
    chunk_steps: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"g_steps (DeepInversion steps) must be >= 1, got {self.steps}.")
        check_chunk_steps(self.chunk_steps, self.steps)

    def init(self, rng: jax.Array) -> dict:
        del rng
        return {}

    def begin(self, rng: jax.Array, teacher_vars: dict) -> DeepInversionCarry:
        """Noise pixels and random targets for one batch: the carry before step 0."""
        u_rng, y_rng, step_rng = jax.random.split(rng, 3)
        # Made inside the call: split along the batch explicitly (see FastSynthesizer.synthesize).
        u0 = sharding.constrain_batch(
            jax.random.normal(u_rng, (self.batch_size, *self.image_shape)), self.batch_sharding
        )
        targets = sharding.constrain_batch(
            jax.random.randint(y_rng, (self.batch_size,), 0, self.num_classes), self.batch_sharding
        )
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
        """The best images, the BN memory update and the metrics of a finished batch."""
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
        return state, bn_memory, jnp.clip(carry.best_images, 0.0, 1.0), metrics

    def synthesize(
        self,
        state: dict,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[dict, losses.BNMemory, jax.Array, dict]:
        """One batch from noise in one function (a `lax.scan` over all steps).

        Returns:
          (state, BN memory, best images [B, H, W, C] in [0, 1], metrics). On CPU, where a scan
          is slow, the run loop calls `begin`, `advance` (unrolled chunks) and `finish` instead.
        """
        carry = self.begin(rng, teacher_vars)
        carry = self.advance(
            carry, bn_memory, teacher_vars, student_vars, adv_weight, 0, self.steps
        )
        return self.finish(state, carry, bn_memory)

    def compile_call(
        self,
        state: Any,
        teacher_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
        *,
        mesh: Mesh,
        donate: bool = True,
    ) -> tuple[SynthesisCall, float]:
        """The synthesis call on `mesh`: one compiled function, or host-driven chunks.

        With `chunk_steps > 0` the steps run as `steps / chunk_steps` calls of one compiled,
        unrolled chunk driven from the host (XLA:CPU runs scans slowly; see synthesis/steps.py),
        between a compiled `begin` and `finish` (pool insert included). Returns
        `(call, compile_seconds)`; `call` has the signature of `base.synthesis_call`.
        """
        chunk = self.chunk_steps
        if chunk == 0:
            return super().compile_call(
                state, teacher_vars, rng, adv_weight, mesh=mesh, donate=donate
            )
        start = time.perf_counter()
        begin = compilation.compile_jitted(jax.jit(self.begin), rng, teacher_vars)
        carry = jax.eval_shape(self.begin, rng, teacher_vars)

        def advance_fn(carry, bn_memory, teacher_vars, student_vars, adv, first_step):
            return self.advance(
                carry, bn_memory, teacher_vars, student_vars, adv, first_step, chunk, unroll=True
            )

        student_vars = state.student.variables
        advance = compilation.compile_jitted(
            jax.jit(advance_fn, donate_argnums=0),
            carry,
            state.bn_memory,
            teacher_vars,
            student_vars,
            adv_weight,
            jnp.int32(0),
        )

        def finish_fn(state, carry):
            synth, bn_memory, images, metrics = self.finish(
                state.synthesizer, carry, state.bn_memory
            )
            state = state.replace(
                synthesizer=synth, bn_memory=bn_memory, pool=pool_lib.add(state.pool, images)
            )
            return state, images, metrics

        finish = compilation.compile_jitted(
            jax.jit(
                finish_fn,
                out_shardings=synthesis_out_shardings(state, mesh),
                donate_argnums=0 if donate else (),
            ),
            state,
            carry,
        )
        seconds = time.perf_counter() - start

        def call(state, teacher_vars, rng, adv):
            carry = begin(rng, teacher_vars)
            for first in range(0, self.steps, chunk):
                carry = advance(
                    carry,
                    state.bn_memory,
                    teacher_vars,
                    state.student.variables,
                    adv,
                    jnp.int32(first),
                )
            return finish(state, carry)

        return call, seconds


def check_chunk_steps(chunk_steps: int, steps: int) -> None:
    """Raises a ValueError unless `chunk_steps` is 0 or a positive divisor of `steps`."""
    if not isinstance(chunk_steps, int):
        raise ValueError(
            f"chunk_steps must be an int, got {chunk_steps!r} (components.build resolves 'auto')."
        )
    if chunk_steps < 0 or (chunk_steps and steps % chunk_steps):
        raise ValueError(
            f"synthesis.chunk_steps={chunk_steps} must be >= 0 and divide g_steps={steps}."
        )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis` block for DeepInversion (before any compute; 'auto' always fits)."""
    chunk = backend.parse_count(s.chunk_steps, "synthesis.chunk_steps", 0)
    if chunk is not None:
        check_chunk_steps(chunk, s.g_steps)


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> DeepInversionSynthesizer:
    """The DeepInversionSynthesizer of a distillation run's config (`chunk_steps` resolved:
    `backend.resolve`).
    """
    s = config.synthesis
    return DeepInversionSynthesizer(
        objective=objective_from_config(s, info, teacher, student),
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        image_shape=tuple(info.image_shape),
        steps=s.g_steps,
        lr=s.lr_x,
        betas=tuple(s.inner_betas),
        mean=tuple(info.mean),
        std=tuple(info.std),
        batch_sharding=batch_sharding,
        adv=s.adv,
        adv_warmup=config.warmup,
        chunk_steps=s.chunk_steps,
    )
