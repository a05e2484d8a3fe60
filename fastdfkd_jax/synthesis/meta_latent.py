"""FastDFKD with a meta-learned latent: the original's ImageNet synthesizer (Fast-50).

The original's ImageNet variant (zju-vipa/Fast-Datafree, `FastMetaSynthesizerForImageNet`) differs
from its CIFAR one (`fastdfkd.FastSynthesizer`, which this module wraps and reuses for the inner
loop, the objective and the BN memory) in the latent:

- z [B, *latent] is meta state, not fresh noise: every call starts its inner loop at the meta z,
  and the meta step updates z as well as the generator G, z with its own Adam (`meta_lr_z`, the
  same betas as G's);
- z and both meta-optimizer states are reset every `reset_every` calls (the original's `reinit`,
  50 in the published runs): z ~ N(0, I) again, Adam moments and counts zero; G is kept. As in
  the original, whose call counter is 1-based, call c (0-based) starts with a reset when
  (c + 1) is a multiple of `reset_every`, so the first z serves `reset_every - 1` calls;
- the meta-gradients of both G and z (`meta_gradient`):
  - `reptile`: `reptile_factor * (theta - theta'_K)`, what the published ImageNet runs used
    (`is_maml=0`); the original's ImageNet Reptile has no factor (1; a commented-out 40), the
    config sets it;
  - `first_order`: the sum of the inner gradients. The original's ImageNet FOMAML gives G the
    last inner gradient and z its *value* (`src.grad.add_(tar.data)`), a bug; here z gets the sum
    of its inner gradients, like G;
  - `exact`: the gradient of the summed inner losses through every inner step, w.r.t. G and z.

The pool receives the lowest-loss iterate of each call, as the CIFAR variant does (the ImageNet
script adds the last iterate's images). The original's ImageNet generator is `DeepGenerator`
(a 14x14 spatial latent upsampled four times to 224). `build` makes the synthesizer from a run
config; the `meta_latent` block holds its keys (`config_blocks.meta_latent`).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fastdfkd_jax import sharding
from fastdfkd_jax.synthesis import fastdfkd, losses
from fastdfkd_jax.synthesis.base import from_block, uniform_targets
from fastdfkd_jax.synthesis.wraps_fast import WrapsFast


@flax.struct.dataclass
class MetaLatentState:
    """The meta generator and the meta latent.

    Attributes:
      generator: the meta generator's `fastdfkd.GeneratorState` (parameters, unused BN running
        statistics, its meta Adam state).
      z: float32 [B, *latent], the meta latent.
      z_opt_state: the meta Adam state of z.
      calls: int32 scalar, synthesis calls made so far (the reset schedule's counter).

    """

    generator: fastdfkd.GeneratorState
    z: jax.Array
    z_opt_state: Any
    calls: jax.Array


@dataclasses.dataclass(frozen=True)
class MetaLatentSynthesizer(WrapsFast):
    """FastDFKD's meta-synthesizer with a meta-learned latent (see the module docstring).

    Attributes:
      base: the `FastSynthesizer` whose generator, objective, inner loop and learning rates
        (`lr_g`, `lr_z` inner; `meta_lr` for G) are used; its `meta` must be True.
      meta_lr_z: the meta Adam's learning rate of z.
      reset_every: reset z and the meta optimizers every this many calls (0: never).

    """

    base: fastdfkd.FastSynthesizer
    meta_lr_z: float
    reset_every: int

    def __post_init__(self):
        if not self.base.meta:
            raise ValueError(
                "A meta-learned latent needs the meta generator (synthesis.fast.strategy='meta')."
            )
        if self.reset_every < 0:
            raise ValueError(f"meta_latent.reset_every must be >= 0, got {self.reset_every}.")

    @property
    def meta_gradient_label(self) -> str:
        return f"{self.base.meta_gradient}+z"

    def z_optimizer(self) -> optax.GradientTransformation:
        b1, b2 = self.base.meta_betas
        return optax.adam(self.meta_lr_z, b1=b1, b2=b2)

    def fresh_latent(self, rng: jax.Array) -> jax.Array:
        """A fresh latent ~ N(0, I) [B, *latent], split along the batch like the call's arrays."""
        z = jax.random.normal(rng, self.base.latent_shape())
        return sharding.constrain_batch(z, self.base.batch_sharding)

    def init(self, rng: jax.Array) -> MetaLatentState:
        g_rng, z_rng = jax.random.split(rng)
        z = self.fresh_latent(z_rng)
        return MetaLatentState(
            generator=self.base.init(g_rng),
            z=z,
            z_opt_state=self.z_optimizer().init(z),
            calls=jnp.zeros((), jnp.int32),
        )

    def start_epoch(self, state: MetaLatentState, epoch: int, rng: jax.Array) -> MetaLatentState:
        """The wrapped synthesizer's epoch hook (its `reset_layers`) on the generator."""
        return state.replace(generator=self.base.start_epoch(state.generator, epoch, rng))

    def maybe_reset(
        self, state: MetaLatentState, rng: jax.Array
    ) -> tuple[MetaLatentState, jax.Array]:
        """The state a call starts from: z and both meta-optimizer states fresh when due.

        Returns:
          (state, reset): reset is a bool scalar, True when this call resets.

        """
        if self.reset_every == 0:
            return state, jnp.zeros((), bool)
        reset = (state.calls + 1) % self.reset_every == 0
        z = self.fresh_latent(rng)
        fresh = dict(
            z=z,
            z_opt_state=self.z_optimizer().init(z),
            g_opt=self.base.meta_optimizer().init(state.generator.params),
        )
        old = dict(z=state.z, z_opt_state=state.z_opt_state, g_opt=state.generator.opt_state)
        picked = jax.tree.map(lambda f, o: jnp.where(reset, f, o), fresh, old)
        state = state.replace(
            z=picked["z"],
            z_opt_state=picked["z_opt_state"],
            generator=state.generator.replace(opt_state=picked["g_opt"]),
        )
        return state, reset

    @staticmethod
    def call_keys(rng: jax.Array) -> jax.Array:
        """The call's keys [3]: a latent reset, targets, inner steps."""
        return jax.random.split(rng, 3)

    def draw_targets(self, rng: jax.Array) -> jax.Array:
        """The call's target classes int32 [B], uniform (see `PoolSynthesis.draw_targets`)."""
        base = self.base
        return uniform_targets(self.call_keys(rng)[1], base.batch_size, base.num_classes)

    def synthesize(
        self,
        state: MetaLatentState,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[MetaLatentState, losses.BNMemory, jax.Array, dict]:
        """One synthesis call (pure, jittable).

        Returns:
          (new state, new BN memory, best images [B, H, W, C] in [0, 1], metrics).

        """
        base = self.base
        reset_rng, _, inner_rng = self.call_keys(rng)  # the second draws the targets
        state, reset = self.maybe_reset(state, reset_rng)
        g = state.generator
        z0 = sharding.constrain_batch(state.z, base.batch_sharding)
        targets = sharding.constrain_batch(self.draw_targets(rng), base.batch_sharding)
        rest = (targets, inner_rng, teacher_vars, student_vars, bn_memory, adv_weight)
        if base.meta_gradient == "exact":
            # inner_run(meta_params, batch_stats, z0, ...): differentiate w.r.t. G and z0.
            (objective, aux), (g_grad, z_grad) = jax.value_and_grad(
                base.inner_run, argnums=(0, 2), has_aux=True
            )(g.params, g.batch_stats, z0, *rest)
        else:
            objective, aux = base.inner_run(g.params, g.batch_stats, z0, *rest)
            if base.meta_gradient == "first_order":
                g_grad, z_grad = aux["grad_sum"], aux["grad_sum_z"]
            else:
                factor = base.reptile_factor
                g_grad = jax.tree.map(lambda p, a: factor * (p - a), g.params, aux["adapted"])
                z_grad = factor * (z0 - aux["adapted_z"])
        updates, g_opt = base.meta_optimizer().update(g_grad, g.opt_state, g.params)
        z_updates, z_opt = self.z_optimizer().update(z_grad, state.z_opt_state, state.z)
        state = MetaLatentState(
            generator=g.replace(params=optax.apply_updates(g.params, updates), opt_state=g_opt),
            z=sharding.constrain_batch(
                optax.apply_updates(state.z, z_updates), base.batch_sharding
            ),
            z_opt_state=z_opt,
            calls=state.calls + 1,
        )
        bn_memory, metrics = base.call_outputs(bn_memory, objective, aux, g_grad)
        metrics.update(
            meta_grad_norm_z=optax.tree.norm(z_grad), latent_reset=reset.astype(jnp.float32)
        )
        return state, bn_memory, aux["best_images"], metrics


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.meta_latent`: the meta-learned latent's keys beside the `fast` block, at the
    original's ImageNet values (`config_blocks.meta_latent`).
    """
    return ml_collections.ConfigDict(
        dict(
            reset_every=50,  # synthesis calls between resets of z to N(0, I) (0: never)
            meta_lr_z=5e-3,  # the meta Adam's rate on z
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.fast` and `synthesis.meta_latent` blocks (before any compute)."""
    fastdfkd.validate(s)
    if s.meta_latent.reset_every < 0:
        raise ValueError(
            f"synthesis.meta_latent.reset_every must be >= 0, got {s.meta_latent.reset_every}."
        )
    if s.fast.strategy != "meta":
        raise ValueError(
            f"synthesis.method='fast_meta_latent' needs synthesis.fast.strategy='meta', got "
            f"{s.fast.strategy!r}."
        )


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> MetaLatentSynthesizer:
    """The synthesizer of a run config: `fastdfkd.build`'s, with `synthesis.meta_latent`'s keys."""
    return from_block(
        MetaLatentSynthesizer,
        config.synthesis.meta_latent,
        base=fastdfkd.build(config, info, teacher, student, batch_sharding),
    )
