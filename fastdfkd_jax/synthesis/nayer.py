"""NAYER (Tran et al., CVPR 2024): a generator trained in place from label embeddings through
noisy layers redrawn for every batch.

As the original's NAYER synthesizer (tmtuan1307/NAYER, `datafree/synthesis/nayer.py`). One
synthesis call:

1. the batch's targets are fixed: `groups` groups of one image per class, in class order; the
   generator's input is the classes' label embeddings in that order (`label_embeddings`);
2. the noisy layers (one Dense per group) are redrawn, kernels N(0, 1) and biases 0; a new Adam
   (`lr_g`, `betas`) over the whole generator;
3. `g_steps` steps of FastDFKD's inversion loss (BN statistics blended with the memory at
   `bn_momentum`, CE against the targets, the masked adversarial KL once on), keeping the
   lowest-loss iterate's images, as `fastdfkd.FastSynthesizer.inner_run` does with a latent that
   does not move (the embeddings);
4. the generator keeps its trained weights for the next call (noisy layers aside); the BN memory
   takes the last step's statistics.

Every `g_life` epochs (`start_epoch`: at epochs e with e % g_life == 0 or (e - warmup) % g_life
== 0, as the original) the whole generator is rebuilt from scratch. An epoch makes
`warmup_calls` calls while warming up and `calls` after, all before its student steps
(`calls_per_round`). `build` makes the synthesizer from a run config.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fastdfkd_jax import backend, precision, sharding
from fastdfkd_jax.models.noisy_generator import (
    NoisyLayerGenerator,
    group_embeddings,
    group_targets,
    redraw_noisy_layers,
)
from fastdfkd_jax.synthesis import fastdfkd, label_embeddings, losses
from fastdfkd_jax.synthesis.base import adv_start_epoch
from fastdfkd_jax.synthesis.objective import objective_from_config
from fastdfkd_jax.synthesis.wraps_fast import WrapsFast


@flax.struct.dataclass
class NayerState:
    """The persistent generator (`fastdfkd.GeneratorState`, no optimizer state: each call starts
    a new Adam) and the label embeddings [C, D] it starts from (constant).
    """

    generator: fastdfkd.GeneratorState
    embeddings: jax.Array


@dataclasses.dataclass(frozen=True)
class NayerSynthesizer(WrapsFast):
    """NAYER's synthesizer (see the module docstring).

    Attributes:
      base: the `FastSynthesizer` whose inner loop, objective and step settings it uses: its
        generator a `NoisyLayerGenerator`, strategy 'sequential', `lr_z` 0 (the embeddings do not
        move).
      table: the label embeddings [C, D] (numpy; the state holds them on device).
      table_source: where the table came from (`synthesis.nayer.embeddings`): the table is left
        out of comparisons, this names it.
      g_life: epochs between rebuilds of the generator.
      warmup: the run's warmup epochs (the rebuild schedule and the calls per epoch count from it).
      warmup_calls, calls: synthesis calls per epoch while warming up, and after.

    """

    base: fastdfkd.FastSynthesizer
    table: np.ndarray = dataclasses.field(compare=False, repr=False)
    table_source: str = ""
    g_life: int = 10
    warmup: int = 0
    warmup_calls: int = 10
    calls: int = 2

    def __post_init__(self):
        generator = self.base.generator
        if not isinstance(generator, NoisyLayerGenerator):
            raise ValueError(f"NAYER needs a NoisyLayerGenerator, got {type(generator).__name__}.")
        if self.table.shape[0] != generator.num_classes:
            raise ValueError(
                f"The label embeddings have {self.table.shape[0]} rows for "
                f"{generator.num_classes} classes."
            )
        for name in ("g_life", "warmup_calls", "calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"synthesis.nayer.{name} must be >= 1, got {getattr(self, name)}.")

    @property
    def meta_gradient_label(self) -> str:
        return "none"

    @property
    def max_calls_per_round(self) -> int:
        return max(self.warmup_calls, self.calls)

    def calls_per_round(self, epoch: int) -> int:
        """`warmup_calls` in a warmup epoch, `calls` after (the epoch has one round)."""
        return self.warmup_calls if epoch < self.warmup else self.calls

    def inputs(self, embeddings: jax.Array) -> jax.Array:
        """The generator's input [B, D]: each group's embeddings, split along the batch."""
        groups = self.base.generator.groups
        return sharding.constrain_batch(
            group_embeddings(embeddings, groups), self.base.batch_sharding
        )

    def init_generator(self, rng: jax.Array) -> fastdfkd.GeneratorState:
        """A generator built from scratch (PyTorch's default init; noisy layers N(0, 1))."""
        variables = self.base.generator.init(rng, self.inputs(jnp.asarray(self.table)))
        return fastdfkd.GeneratorState(variables["params"], variables["batch_stats"], ())

    def init(self, rng: jax.Array) -> NayerState:
        return NayerState(self.init_generator(rng), jnp.asarray(self.table))

    def rebuild_due(self, epoch: int) -> bool:
        """Whether `epoch` starts with a new generator (the original's g_life test)."""
        return epoch % self.g_life == 0 or (epoch - self.warmup) % self.g_life == 0

    def start_epoch(self, state: NayerState, epoch: int, rng: jax.Array) -> NayerState:
        """At a rebuild epoch, the generator built anew, placed as the old one."""
        if not self.rebuild_due(epoch):
            return state
        placement = jax.tree.map(lambda leaf: leaf.sharding, state.generator)
        fresh = jax.jit(self.init_generator, out_shardings=placement)(rng)
        return state.replace(generator=fresh)

    def draw_targets(self, rng: jax.Array) -> jax.Array:
        """The batch's target classes int32 [B]: `groups` groups of one image per class, in class
        order, the same for every call (`rng` unused; see `PoolSynthesis.draw_targets`).
        """
        del rng
        return group_targets(self.base.num_classes, self.base.generator.groups)

    def synthesize(
        self,
        state: NayerState,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[NayerState, losses.BNMemory, jax.Array, dict]:
        """One synthesis call (pure, jittable).

        Returns:
          (new state, new BN memory, best images [B, H, W, C] in [0, 1], metrics).

        """
        base = self.base
        noise_rng, inner_rng = jax.random.split(rng)
        g = state.generator
        params = redraw_noisy_layers(g.params, noise_rng)
        targets = sharding.constrain_batch(self.draw_targets(rng), base.batch_sharding)
        objective, aux = base.inner_run(
            params,
            g.batch_stats,
            self.inputs(state.embeddings),
            targets,
            inner_rng,
            teacher_vars,
            student_vars,
            bn_memory,
            adv_weight,
        )
        state = state.replace(generator=g.replace(params=aux["adapted"]))
        bn_memory, metrics = base.call_outputs(bn_memory, objective, aux, aux["grad_sum"])
        return state, bn_memory, aux["best_images"], metrics


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.nayer`: NAYER's own keys, the values of its CIFAR-10 scripts (`methods.nayer`
    sets CIFAR-100's 40 steps).
    """
    return ml_collections.ConfigDict(
        dict(
            g_steps=30,  # generator steps per batch (CIFAR-100: 40)
            lr_g=4e-3,
            betas=(0.5, 0.999),
            noisy_width=1000,  # the noisy layers' outputs (the original's le_emb_size)
            g_life=10,  # epochs between rebuilds of the generator
            warmup_calls=10,  # synthesis calls per warmup epoch (the original's gwp_loops)
            calls=2,  # synthesis calls per epoch after warmup (g_loops)
            # The generator steps unrolled ('true') or a rolled lax.scan ('false'); 'auto'
            # (backend.py): unrolled on CPU, rolled elsewhere.
            unroll=backend.AUTO,
            # The label embeddings (label_embeddings.py): a (C, D) .npy file (e.g. NAYER's CLIP
            # tables, scripts/nayer_embeddings.py), 'onehot' (the C x C identity) or 'random' (a
            # fixed N(0, 1) table of embedding_dim values per class, from embedding_seed). Without
            # a file, 'onehot': measured on digits it gave 99.72% against random's 98.33% at half
            # the synthesis time (docs/benchmarks.md, "NAYER's label embeddings").
            embeddings=label_embeddings.ONEHOT,
            embedding_dim=512,  # 'random': CLIP ViT-B/32's text width, as the original's tables
            embedding_seed=0,
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.nayer` block's form (before any compute; the class count and the
    devices are checked by `build`).
    """
    embeddings = s.nayer.embeddings
    if embeddings not in label_embeddings.BUILT_IN and not str(embeddings).endswith(".npy"):
        raise ValueError(
            f"synthesis.nayer.embeddings={embeddings!r} must be 'random', 'onehot' or a .npy path."
        )


def groups_of(batch_size: int, num_classes: int, devices: int) -> int:
    """The groups of one image per class in a synthesis batch, which the class count must divide
    on every device (a group's noisy layer stays on one device).
    """
    per_device = batch_size // devices
    if batch_size % devices or per_device % num_classes:
        raise ValueError(
            f"NAYER needs a synthesis batch whose share on each device is a multiple of the "
            f"{num_classes} classes: synthesis.batch_size={batch_size} on {devices} device(s) "
            f"gives {batch_size / devices:g} per device."
        )
    return batch_size // num_classes


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> NayerSynthesizer:
    """The NayerSynthesizer of a distillation run's config (`config.synthesis` and its `nayer`
    block; `unroll` resolved: `backend.resolve`), its generator computing in the run's precision.
    """
    s, block = config.synthesis, config.synthesis.nayer
    devices = sharding.data_size(batch_sharding.mesh) if batch_sharding is not None else 1
    groups = groups_of(s.batch_size, info.num_classes, devices)
    table = label_embeddings.load(
        block.embeddings, info.num_classes, block.embedding_dim, block.embedding_seed
    )
    height = info.image_shape[0]
    generator = NoisyLayerGenerator(
        num_classes=info.num_classes,
        groups=groups,
        noisy_width=block.noisy_width,
        ngf=s.generator.ngf,
        img_size=height,
        nc=info.image_shape[-1],
        dtype=precision.compute_dtype(config.precision),
    )
    betas = tuple(block.betas)
    base = fastdfkd.FastSynthesizer(
        generator=generator,
        objective=objective_from_config(s, info, teacher, student),
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        g_steps=block.g_steps,
        lr_g=block.lr_g,
        lr_z=0.0,  # the embeddings are the input, not a latent to learn
        meta_lr=0.0,
        inner_betas=betas,
        meta_betas=betas,
        inner_eps_root=0.0,
        meta_gradient="first_order",
        reptile_factor=1.0,
        strategy="sequential",  # trained in place from call to call
        remat=False,
        unroll=block.unroll,
        batch_sharding=batch_sharding,
        adv=s.adv,
        adv_start_epoch=adv_start_epoch(s.adv_start, config.warmup),
    )
    return NayerSynthesizer(
        base=base,
        table=table,
        table_source=str(block.embeddings),
        g_life=block.g_life,
        warmup=config.warmup,
        warmup_calls=block.warmup_calls,
        calls=block.calls,
    )


__all__ = ["NayerState", "NayerSynthesizer", "build", "config_block", "validate"]
