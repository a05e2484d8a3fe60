"""FastDFKD: a meta-learned generator that synthesizes a new batch in a few inner steps.

One synthesis call (`FastSynthesizer.synthesize`, jittable, pure):
1. fresh latents z ~ N(0, I) [B, *latent] and targets y ~ U{0..K-1} [B];
2. the fast generator G' starts at the meta generator G; a new inner Adam over (G', z), learning
   rates `lr_g` and `lr_z`;
3. `g_steps` inner steps, unrolled or as one `lax.scan` (`unroll`): loss, gradient, the
   lowest-loss iterate's images kept (loss measured before the update), update;
4. the meta step: a persistent Adam (lr `meta_lr`) on G with one of the meta-gradients:
   - `first_order`: the sum of the inner gradients, as the original code. It is the gradient of
     the summed inner losses sum_k L_k(G'_k) with the inner steps held constant;
   - `exact`: the exact gradient of that same objective, sum_k L_k(G'_k(G)), differentiated
     through every inner Adam step (second order; `remat` bounds its memory with
     `jax.checkpoint` on the scan body). Same objective as `first_order`, so the two differ only
     by the second-order terms;
   - `reptile`: `reptile_factor * (G - G'_K)`;
5. the BN momentum statistics are updated from the last inner step.
`strategy` names the paper's three ways to start a batch's generator: 'meta' (the above),
'sequential' (the original's synthesis/fast.py: the inner loop starts from the one persistent
generator and its result G'_K replaces it; no meta step) and 'independent' (a freshly initialized
generator every call; the state never changes).
Before epoch `reset_l0_epoch` the run re-initializes the generator layers `reset_layers` (the
original's `reset_l0`, via `start_epoch`; 'meta' only, as the original). `build` makes the
synthesizer from a run config.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fastdfkd_jax import backend, sharding
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.synthesis import inner_optimizers, losses
from fastdfkd_jax.synthesis.base import (
    PoolSynthesis,
    adv_start_epoch,
    from_block,
    generator_from_config,
    reset_layers,
    uniform_targets,
)
from fastdfkd_jax.synthesis.objective import Objective, objective_from_config
from fastdfkd_jax.synthesis.steps import run_steps

META_GRADIENTS = ("exact", "first_order", "reptile")
STRATEGIES = ("meta", "sequential", "independent")


@flax.struct.dataclass
class GeneratorState:
    """The generator: parameters, (unused) BN running statistics, meta-optimizer state (empty
    for the 'sequential' and 'independent' strategies).
    """

    params: Any
    batch_stats: Any
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class FastSynthesizer(PoolSynthesis):
    """FastDFKD's meta-synthesizer. Static configuration; all state is passed in and out.

    Attributes:
      generator: the generator module (`z [B, *latent] -> images [B, H, W, C]` in [0, 1]).
      objective: the inversion objective.
      num_classes: K, for the random targets.
      batch_size: B, images per synthesis call.
      g_steps: inner steps per call (>= 1).
      lr_g, lr_z: inner Adam learning rates of the generator and of z.
      meta_lr: the meta Adam's learning rate (the original uses lr_g * g_steps).
      inner_betas, meta_betas: Adam (b1, b2) of the inner and meta optimizers.
      inner_eps_root: added under the inner Adam's square root for the exact meta-gradients only
        (the original's Adam has none); > 0 keeps the second-order gradient finite for parameters
        whose inner gradient is exactly zero (e.g. a Dense bias before a BatchNorm).
      meta_gradient: one of `META_GRADIENTS`.
      reptile_factor: scale of the Reptile meta-gradient.
      strategy: one of `STRATEGIES` (see the module docstring).
      inner_optimizer: 'adam' (the original) or 'nsgd' (see `inner_transform`).
      remat: rematerialize the inner steps in the exact meta-gradient.
      unroll: run the inner steps unrolled, with no loop (fast on CPU), or as a rolled `lax.scan`
        (`steps.run_steps`).
      batch_sharding: how to split batch-leading arrays made inside the call (z, targets, images)
        over devices, e.g. `sharding.batch_sharding(mesh)`; None leaves placement to XLA.
      adv, adv_start_epoch: the adversarial weight, from epoch `adv_start_epoch` on (0 before).
      reset_l0_epoch: the epoch whose start re-initializes `reset_layers` (-1: never).
      reset_layers, reset_std: the generator layers to reset and their noise scale.
      reset_bn_scale_mean: the mean of the re-drawn BatchNorm scales (0.0, the original's; 1.0
        the usual BatchNorm start).

    """

    generator: nn.Module
    objective: Objective
    num_classes: int
    batch_size: int
    g_steps: int
    lr_g: float
    lr_z: float
    meta_lr: float
    inner_betas: tuple[float, float]
    meta_betas: tuple[float, float]
    inner_eps_root: float
    meta_gradient: str
    reptile_factor: float
    strategy: str
    remat: bool
    batch_sharding: jax.sharding.Sharding | None = None
    unroll: bool = True
    adv: float = 0.0
    adv_start_epoch: int = 0
    reset_l0_epoch: int = -1
    reset_layers: tuple[str, ...] = ()
    reset_std: float = 0.02
    reset_bn_scale_mean: float = 0.0
    inner_optimizer: str = "adam"

    def __post_init__(self):
        if self.g_steps < 1:
            raise ValueError(f"g_steps must be >= 1, got {self.g_steps}.")
        check_choice("synthesis.fast.meta_gradient", self.meta_gradient, META_GRADIENTS)
        check_choice("synthesis.fast.strategy", self.strategy, STRATEGIES)
        check_choice("synthesis.fast.inner_optimizer", self.inner_optimizer, inner_optimizers.KINDS)
        if not isinstance(self.unroll, bool):
            raise ValueError(
                f"unroll must be a bool, got {self.unroll!r} (components.build resolves 'auto')."
            )

    @property
    def meta(self) -> bool:
        """Whether a meta step updates the generator (the 'meta' strategy)."""
        return self.strategy == "meta"

    @property
    def meta_gradient_label(self) -> str:
        return self.meta_gradient if self.meta else "none"

    def start_epoch(self, state: GeneratorState, epoch: int, rng: jax.Array) -> GeneratorState:
        """Before `reset_l0_epoch`'s call, the layers `reset_layers` re-initialized ('meta' only).

        The meta optimizer's moments are kept, as the original keeps them.
        """
        if epoch != self.reset_l0_epoch or not self.meta:
            return state
        reset = jax.jit(
            functools.partial(
                reset_layers,
                layer_names=self.reset_layers,
                std=self.reset_std,
                scale_mean=self.reset_bn_scale_mean,
            )
        )
        return state.replace(params=reset(state.params, rng))

    # -- construction ---------------------------------------------------------------------------
    def meta_optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.meta_lr, b1=self.meta_betas[0], b2=self.meta_betas[1])

    def inner_transform(self) -> optax.GradientTransformation:
        """The inner optimizer over {'g': generator params, 'z': latents}, rates lr_g and lr_z:
        the original's Adam (inner_betas) or normalized gradient descent, whose derivative stays
        bounded for the exact meta-gradient (`inner_optimizers`, docs/benchmarks.md).
        """
        exact = self.meta_gradient == "exact" and self.meta
        # eps_root keeps d sqrt(v) / dv finite where an inner gradient is exactly zero; only the
        # exact meta-gradient differentiates through it. The original's Adam has none.
        return inner_optimizers.generator_and_latent_optimizer(
            self.inner_optimizer,
            self.lr_g,
            self.lr_z,
            self.inner_betas,
            eps_root=self.inner_eps_root if exact else 0.0,
        )

    def latent_shape(self) -> tuple[int, ...]:
        return (self.batch_size, *self.generator.latent_shape)

    def init_generator(self, rng: jax.Array) -> tuple[Any, Any]:
        """Fresh generator `(params, batch_stats)`."""
        variables = self.generator.init(rng, jnp.zeros(self.latent_shape()), train=True)
        return variables["params"], variables["batch_stats"]

    def init(self, rng: jax.Array) -> GeneratorState:
        params, batch_stats = self.init_generator(rng)
        opt_state = self.meta_optimizer().init(params) if self.meta else ()
        return GeneratorState(params, batch_stats, opt_state)

    # -- the inner loop -------------------------------------------------------------------------
    def generate(self, params: Any, batch_stats: Any, z: jax.Array) -> jax.Array:
        """Images [B, H, W, C] from latents with batch-statistics BN (updates discarded)."""
        images, _ = self.generator.apply(
            {"params": params, "batch_stats": batch_stats}, z, train=True, mutable=["batch_stats"]
        )
        return sharding.constrain_batch(images, self.batch_sharding)

    def inner_run(
        self,
        meta_params: Any,
        batch_stats: Any,
        z0: jax.Array,
        targets: jax.Array,
        rng: jax.Array,
        teacher_vars: dict,
        student_vars: dict,
        bn_memory: losses.BNMemory,
        adv_weight: jax.Array,
    ) -> tuple[jax.Array, dict]:
        """Runs the `g_steps` inner steps from `meta_params` and z0.

        Returns:
          (meta objective, aux). The meta objective is the sum of the inner losses when
          `meta_gradient == 'exact'` (it is what `jax.grad` differentiates), else the loss of the
          last inner step. aux: `best_images` [B,H,W,C], `best_loss`, `grad_sum` (sum of the inner
          generator gradients), `adapted` (G'_K), `grad_sum_z` and `adapted_z` (the same for the
          latents, for a meta-learned z), `losses` [g_steps], `parts` (last step's loss terms),
          `stats` (last step's BN means and variances).

        """
        tx = self.inner_transform()
        exact = self.meta_gradient == "exact" and self.meta

        def inner_loss(inner, step_rng):
            images = self.generate(inner["g"], batch_stats, inner["z"])
            loss, (records, parts) = self.objective(
                images, targets, step_rng, teacher_vars, student_vars, bn_memory, adv_weight
            )
            return loss, (images, records, parts)

        def body(carry, k):
            inner, opt_state, best_loss, best_images, grad_sum, loss_sum = carry
            (loss, (images, records, parts)), grads = jax.value_and_grad(inner_loss, has_aux=True)(
                inner, jax.random.fold_in(rng, k)
            )
            loss_sum = loss_sum + loss
            # Bookkeeping is not part of the meta-objective: keep it out of the second-order graph.
            images, loss_sg = jax.lax.stop_gradient((images, loss))
            better = loss_sg < best_loss
            best_images = jnp.where(better, images, best_images)
            best_loss = jnp.where(better, loss_sg, best_loss)
            grad_sum = jax.tree.map(jnp.add, grad_sum, jax.lax.stop_gradient(grads))
            updates, opt_state = tx.update(grads, opt_state, inner)
            inner = optax.apply_updates(inner, updates)
            stats = (tuple(r.mean for r in records), tuple(r.var for r in records))
            carry = (inner, opt_state, best_loss, best_images, grad_sum, loss_sum)
            return carry, (loss_sg, parts, stats)

        inner0 = {"g": meta_params, "z": z0}
        image_shape = jax.eval_shape(self.generate, meta_params, batch_stats, z0)
        carry0 = (
            inner0,
            tx.init(inner0),
            jnp.asarray(jnp.inf, z0.dtype),
            sharding.constrain_batch(
                jnp.zeros(image_shape.shape, image_shape.dtype), self.batch_sharding
            ),
            jax.tree.map(jnp.zeros_like, inner0),
            jnp.zeros((), z0.dtype),
        )
        step = jax.checkpoint(body) if (self.remat and exact) else body
        carry, (step_losses, parts, stats) = run_steps(
            step, carry0, self.g_steps, unroll=self.unroll
        )
        inner, _, best_loss, best_images, grad_sum, loss_sum = carry
        # The summed inner losses, not the loss at the adapted point: first-order is this sum's
        # gradient with the inner steps held constant, so the two meta-gradients share one
        # objective. (MAML's loss at the adapted point measured worse on digits than this sum,
        # and both far below first-order: unrolled through Adam's normalized steps, the
        # meta-objective is rough at the scale of a meta step.)
        objective = loss_sum if exact else step_losses[-1]
        aux = dict(
            best_images=best_images,
            best_loss=best_loss,
            grad_sum=grad_sum["g"],
            adapted=jax.lax.stop_gradient(inner["g"]),
            grad_sum_z=grad_sum["z"],
            adapted_z=jax.lax.stop_gradient(inner["z"]),
            losses=step_losses,
            parts=jax.tree.map(lambda x: x[-1], parts),
            stats=jax.tree.map(lambda x: x[-1], stats),
        )
        return objective, aux

    # -- one synthesis call ---------------------------------------------------------------------
    @staticmethod
    def call_keys(rng: jax.Array) -> jax.Array:
        """The call's keys [4]: latents, targets, inner steps, a fresh generator."""
        return jax.random.split(rng, 4)

    def draw_targets(self, rng: jax.Array) -> jax.Array:
        """The call's target classes int32 [B], uniform (see `PoolSynthesis.draw_targets`)."""
        return uniform_targets(self.call_keys(rng)[1], self.batch_size, self.num_classes)

    def synthesize(
        self,
        state: GeneratorState,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[GeneratorState, losses.BNMemory, jax.Array, dict]:
        """One synthesis call.

        Returns:
          (new generator state, new BN memory, best images [B, H, W, C] in [0, 1], metrics).

        """
        z_rng, _, inner_rng, init_rng = self.call_keys(rng)  # the second draws the targets
        # Drawn inside the call, so they have no input sharding: split them along the batch
        # explicitly (with partitionable threefry the values do not depend on the split).
        z0 = sharding.constrain_batch(
            jax.random.normal(z_rng, self.latent_shape()), self.batch_sharding
        )
        targets = sharding.constrain_batch(self.draw_targets(rng), self.batch_sharding)
        if self.strategy == "independent":
            start_params, _ = self.init_generator(init_rng)
        else:
            start_params = state.params
        args = (state.batch_stats, z0, targets, inner_rng, teacher_vars, student_vars, bn_memory)
        if self.meta and self.meta_gradient == "exact":
            (objective, aux), meta_grad = jax.value_and_grad(self.inner_run, has_aux=True)(
                start_params, *args, adv_weight
            )
        else:
            objective, aux = self.inner_run(start_params, *args, adv_weight)
            if self.meta_gradient == "first_order" or not self.meta:
                meta_grad = aux["grad_sum"]  # reported only, when not meta
            else:
                meta_grad = jax.tree.map(
                    lambda g, a: self.reptile_factor * (g - a), start_params, aux["adapted"]
                )
        if self.meta:
            updates, opt_state = self.meta_optimizer().update(
                meta_grad, state.opt_state, state.params
            )
            state = state.replace(
                params=optax.apply_updates(state.params, updates), opt_state=opt_state
            )
        elif self.strategy == "sequential":  # trained in place: the next batch starts here
            state = state.replace(params=aux["adapted"])
        bn_memory, metrics = self.call_outputs(bn_memory, objective, aux, meta_grad)
        return state, bn_memory, aux["best_images"], metrics

    def call_outputs(
        self, bn_memory: losses.BNMemory, objective: jax.Array, aux: dict, meta_grad: Any
    ) -> tuple[losses.BNMemory, dict]:
        """The BN memory and metrics of a call from `inner_run`'s objective and `aux`.

        The memory takes the call's batch statistics when `bn_momentum > 0`; `meta_grad` is the
        generator's meta-gradient (its norm is reported). Shared with the meta-latent synthesizer.
        """
        if self.objective.bn_momentum > 0:
            bn_memory = losses.update_bn_memory(
                bn_memory, *aux["stats"], self.objective.bn_momentum
            )
        metrics = dict(
            synth_loss_first=aux["losses"][0],
            synth_loss_last=aux["losses"][-1],
            synth_best_loss=aux["best_loss"],
            meta_objective=objective,
            meta_grad_norm=optax.tree.norm(meta_grad),
            **{f"synth_{k}": v for k, v in aux["parts"].items()},
        )
        return bn_memory, metrics


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.fast`: FastDFKD's own keys (`FastSynthesizer`'s fields), at the original's
    Fast-5 values for CIFAR (`methods.fast` sets the per-variant rates).
    """
    return ml_collections.ConfigDict(
        dict(
            g_steps=5,
            lr_g=3e-3,
            lr_z=0.01,
            meta_lr=1.5e-2,  # lr_g * g_steps in the original
            inner_betas=(0.5, 0.999),
            meta_betas=(0.5, 0.999),
            # 'adam' (the original) or 'nsgd' (normalized gradient descent: each step moves a
            # parameter group by lr * sqrt(size) * g / ||g||, the RMS step of Adam's, but a smooth
            # function of the gradient; a research option for the exact meta-gradient,
            # synthesis/inner_optimizers.py).
            inner_optimizer="adam",
            # Adam's eps_root for the exact meta-gradient only (the original has none).
            inner_eps_root=1e-8,
            meta_gradient="first_order",  # one of META_GRADIENTS
            reptile_factor=67.0,  # the original's hard-coded Reptile scale
            # How each batch's generator starts (STRATEGIES, the paper's three): 'meta' (FastDFKD:
            # from the meta-learned generator, which a meta step then updates), 'sequential' (the
            # original's synthesis/fast.py: one generator trained in place from batch to batch,
            # no meta step) or 'independent' (a freshly initialized generator for every batch).
            strategy="meta",
            remat=False,  # jax.checkpoint the inner steps of the exact meta-gradient
            # 'true' unrolls the inner steps, one after the other with no loop (~8x faster than a
            # rolled lax.scan on XLA:CPU), 'false' is a rolled lax.scan (compiles once for any
            # g_steps; accelerators), 'auto' (backend.py): unrolled on CPU, rolled elsewhere.
            unroll=backend.AUTO,
            # reset_l0: the 0-based epoch before whose synthesis call the generator layers
            # `reset_layers` are re-initialized (-1: never). The original fires at its call
            # `ep == 120 + warmup` with ep counted from 1: 0-based epoch 120 + warmup - 1 = 139.
            reset_l0_epoch=139,
            reset_layers=("l1", "bn0"),
            reset_std=0.02,
            # Mean of the re-drawn BatchNorm scales: 0.0, the original (its reset_l0 draws the
            # first BatchNorm's scale like the Linear kernel, N(0, reset_std)), or 1.0 (N(1,
            # reset_std), the usual BatchNorm start; a research option: the original's draw is
            # deliberate or not, it is not a bug that breaks the method).
            reset_bn_scale_mean=0.0,
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.fast` block (before any compute)."""
    check_choice("synthesis.fast.meta_gradient", s.fast.meta_gradient, META_GRADIENTS)
    check_choice("synthesis.fast.strategy", s.fast.strategy, STRATEGIES)
    check_choice("synthesis.fast.inner_optimizer", s.fast.inner_optimizer, inner_optimizers.KINDS)


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> FastSynthesizer:
    """The FastSynthesizer of a distillation run's config (`config.synthesis` and its `fast`
    block, `config.warmup`; `unroll` resolved: `backend.resolve`), its generator computing in the
    run's precision.
    """
    s = config.synthesis
    return from_block(
        FastSynthesizer,
        s.fast,
        generator=generator_from_config(config, info),
        objective=objective_from_config(s, info, teacher, student),
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        batch_sharding=batch_sharding,
        adv=s.adv,
        adv_start_epoch=adv_start_epoch(s.adv_start, config.warmup),
    )
