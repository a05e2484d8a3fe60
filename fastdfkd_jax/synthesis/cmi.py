"""CMI (contrastive model inversion): a fresh generator per batch and a contrastive memory.

As the original's CMISynthesizer (zju-vipa/Fast-Datafree, `datafree/synthesis/contrastive.py`),
built from the pure pieces of `cmi_parts.py`. One synthesis call:

1. z ~ N(0, I) [B, nz], random targets; the generator re-initialized (the original's
   `reset_model`: kernels N(0, 0.02), biases 0, BatchNorm scales N(1, 0.02)) — every call;
2. a new Adam(betas 0.5/0.999) over (G, z); `steps` steps, each:
   - a global view (crop + flip) and a local view (random resized crop + flip) of G(z);
   - the inversion loss on the global view: bn * L_bn(teacher) + oh * CE(teacher, targets) +
     adv * masked KL (FastDFKD's term), the student in eval mode;
   - the teacher's instance features (per-sample spatial means of the inputs of every BatchNorm,
     or of each ResNet-34 stage: `cmi_parts.resolve_feature_layers`) of both views; up to `n_neg`
     earlier [local, global] feature pairs drawn from the memory bank;
   - the contrastive loss of the projection head on [local, cached local] against the detached
     [global, cached global]; loss = inversion + cr * contrastive;
   - one Adam step of (G, z) and one of the head (its own persistent Adam, betas 0.9/0.999);
   - the lowest-loss iterate's images and features kept (loss before the update);
3. the best images into the pool, their features into the bank.
The head, its Adam state and the bank are the synthesizer state (`CMIState`); the generator is
not (it is reset every call). Steps run as host-driven chunks on CPU (`ChunkedSynthesis`).
The original's exactly-full bank (see `cmi_parts.py`) draws negatives here: a fix.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fastdfkd_jax import backend, sharding
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.synthesis import baseline_augment, cmi_parts, losses
from fastdfkd_jax.synthesis.base import (
    ChunkedSynthesis,
    adv_start_epoch,
    check_chunk_steps,
    from_block,
    generator_from_config,
    reset_layers,
    uniform_targets,
    validate_chunk_steps,
)
from fastdfkd_jax.synthesis.objective import adversarial_term, teacher_bn_memory
from fastdfkd_jax.synthesis.steps import run_steps

# The original's reset_model: N(0, 0.02) kernels, zero biases, N(1, 0.02) BatchNorm scales.
RESET_STD = 0.02
# The head's Adam: torch's default betas (the original passes only the learning rate).
HEAD_BETAS = (0.9, 0.999)


@flax.struct.dataclass
class CMIState:
    """CMI's persistent state: the projection head, its Adam state, the memory bank."""

    head_params: Any
    head_opt_state: Any
    bank: cmi_parts.MemoryBank


@flax.struct.dataclass
class CMICarry:
    """One batch's optimization between steps.

    Attributes:
      inner: {'g': generator params, 'z': latents [B, nz]}; opt_state: their Adam state.
      batch_stats: the generator's (unused) running statistics.
      head_params, head_opt_state: the projection head and its Adam state.
      bank: the memory bank (read only during the call).
      targets: int32 [B]; step_rng: the key each step folds its index into.
      best_loss, best_images [B, H, W, C], best_features [B, 2D]: the lowest-loss iterate.
      first_loss, last_loss: scalars; last_parts: the last step's loss terms.
    """

    inner: Any
    opt_state: Any
    batch_stats: Any
    head_params: Any
    head_opt_state: Any
    bank: cmi_parts.MemoryBank
    targets: jax.Array
    step_rng: jax.Array
    best_loss: jax.Array
    best_images: jax.Array
    best_features: jax.Array
    first_loss: jax.Array
    last_loss: jax.Array
    last_parts: dict


@dataclasses.dataclass(frozen=True)
class CMISynthesizer(ChunkedSynthesis):
    """CMI (module docstring). Static configuration; all state is passed in and out.

    Attributes:
      generator: the generator module.
      teacher, student: the frozen teacher and the student (eval mode).
      head: the projection head (`cmi_parts.MLPHead`).
      num_classes, batch_size, image_shape: K, B, (H, W, C).
      steps: generator steps per batch (500 for CMI-500).
      lr_g, lr_z: Adam learning rates of the generator and of z (the original: one, 1e-3).
      betas: the generator Adam's (b1, b2).
      bn, oh, adv: the inversion loss weights (`adv` from epoch `adv_start_epoch` on).
      cr, temperature: the contrastive weight and temperature.
      bank_size, n_neg: memory bank rows and negatives drawn per step.
      padding, flip, local_scale: the views (`baseline_augment.cmi_views`).
      mean, std: the dataset normalization.
      feature_layers: whose inputs give the instance features, 'batchnorm' or 'stages'
        (`cmi_parts.resolve_feature_layers`).
      chunk_steps: host-driven chunks of this many steps (0: one compiled function).
      batch_sharding: how to split batch-leading arrays made inside the call over devices.
    """

    generator: nn.Module
    teacher: nn.Module
    student: nn.Module
    head: cmi_parts.MLPHead
    num_classes: int
    batch_size: int
    image_shape: tuple[int, int, int]
    steps: int
    lr_g: float
    lr_z: float
    betas: tuple[float, float]
    bn: float
    oh: float
    cr: float
    temperature: float
    bank_size: int
    n_neg: int
    padding: int
    flip: bool
    local_scale: tuple[float, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    adv: float = 0.0
    adv_start_epoch: int = 0
    chunk_steps: int = 0
    batch_sharding: jax.sharding.Sharding | None = None
    feature_layers: str = "batchnorm"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"g_steps (CMI steps) must be >= 1, got {self.steps}.")
        check_chunk_steps(self.chunk_steps, self.steps)
        if not 1 <= self.n_neg <= self.bank_size:
            raise ValueError(
                f"synthesis.cmi.n_neg={self.n_neg} must be in [1, bank_size={self.bank_size}]."
            )

    def init_bn_memory(self, teacher_vars: dict, image_shape: Sequence[int]) -> losses.BNMemory:
        """The run's BN memory, shaped like the teacher's BatchNorms (CMI never blends it)."""
        return teacher_bn_memory(self.teacher, teacher_vars, image_shape)

    def feature_dim(self) -> int:
        """D, the teacher's instance-feature width (the sum of the recorded inputs' channels)."""

        def features(x):
            variables = self.teacher.init(jax.random.PRNGKey(0), x, train=False)
            return cmi_parts.capture_records_and_means(
                self.teacher, variables, x, self.feature_layers
            )[2]

        return jax.eval_shape(features, jnp.zeros((2, *self.image_shape))).shape[-1]

    def init(self, rng: jax.Array) -> CMIState:
        """The head (PyTorch's init), its Adam state and an empty bank of [B, 2D] feature pairs."""
        dim = self.feature_dim()
        head_params = self.head.init(rng, jnp.zeros((1, dim)))["params"]
        return CMIState(
            head_params=head_params,
            head_opt_state=self.head_optimizer().init(head_params),
            bank=cmi_parts.init_bank(self.bank_size, 2 * dim),
        )

    def head_optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.lr_g, b1=HEAD_BETAS[0], b2=HEAD_BETAS[1])

    def inner_optimizer(self) -> optax.GradientTransformation:
        b1, b2 = self.betas
        return optax.multi_transform(
            {"g": optax.adam(self.lr_g, b1=b1, b2=b2), "z": optax.adam(self.lr_z, b1=b1, b2=b2)},
            lambda inner: {"g": jax.tree.map(lambda _: "g", inner["g"]), "z": "z"},
        )

    def fresh_generator(self, rng: jax.Array) -> tuple[Any, Any]:
        """A generator as the original's `reset_model` leaves it: (params, batch_stats)."""
        z = jnp.zeros((self.batch_size, *self.generator.latent_shape))
        variables = self.generator.init(rng, z, train=True)
        params = variables["params"]
        params = reset_layers(params, rng, tuple(params), RESET_STD, scale_mean=1.0)
        return params, variables["batch_stats"]

    @staticmethod
    def call_keys(rng: jax.Array) -> jax.Array:
        """The call's keys [4]: latents, targets, a fresh generator, steps."""
        return jax.random.split(rng, 4)

    def draw_targets(self, rng: jax.Array) -> jax.Array:
        """The call's target classes int32 [B], uniform (see `PoolSynthesis.draw_targets`)."""
        return uniform_targets(self.call_keys(rng)[1], self.batch_size, self.num_classes)

    def begin(self, state: CMIState, rng: jax.Array, teacher_vars: dict) -> CMICarry:
        """Latents, targets and a reset generator for one batch: the carry before step 0."""
        z_rng, _, g_rng, step_rng = self.call_keys(rng)  # the second draws the targets
        z = sharding.constrain_batch(
            jax.random.normal(z_rng, (self.batch_size, *self.generator.latent_shape)),
            self.batch_sharding,
        )
        targets = sharding.constrain_batch(self.draw_targets(rng), self.batch_sharding)
        params, batch_stats = self.fresh_generator(g_rng)
        inner = {"g": params, "z": z}
        dim = state.bank.data.shape[1]
        zero = jnp.zeros((), jnp.float32)
        return CMICarry(
            inner=inner,
            opt_state=self.inner_optimizer().init(inner),
            batch_stats=batch_stats,
            head_params=state.head_params,
            head_opt_state=state.head_opt_state,
            bank=state.bank,
            targets=targets,
            step_rng=step_rng,
            best_loss=jnp.asarray(jnp.inf, jnp.float32),
            best_images=jnp.zeros((self.batch_size, *self.image_shape), jnp.float32),
            best_features=jnp.zeros((self.batch_size, dim), jnp.float32),
            first_loss=zero,
            last_loss=zero,
            last_parts={k: zero for k in ("loss_bn", "loss_oh", "loss_adv", "loss_cr")},
        )

    def step_loss(
        self,
        inner: Any,
        head_params: Any,
        carry: CMICarry,
        rng: jax.Array,
        teacher_vars: dict,
        student_vars: dict,
        adv_weight: jax.Array,
    ) -> tuple[jax.Array, tuple]:
        """The loss of one step: (scalar, (images, features [B, 2D], loss terms))."""
        view_rng, neg_rng = jax.random.split(rng)
        images, _ = self.generator.apply(
            {"params": inner["g"], "batch_stats": carry.batch_stats},
            inner["z"],
            train=True,
            mutable=["batch_stats"],
        )
        images = sharding.constrain_batch(images, self.batch_sharding)
        global_view, local_view = baseline_augment.cmi_views(
            view_rng,
            images,
            padding=self.padding,
            flip=self.flip,
            mean=self.mean,
            std=self.std,
            local_scale=self.local_scale,
        )
        t_logits, records, global_features = cmi_parts.capture_records_and_means(
            self.teacher, teacher_vars, global_view, self.feature_layers
        )
        s_logits = self.student.apply(student_vars, global_view, train=False)
        loss_bn = losses.bn_statistics_loss(records)
        loss_oh = losses.one_hot_loss(t_logits, carry.targets)
        loss_adv = adversarial_term("kl", s_logits, t_logits, 1.0)
        _, _, local_features = cmi_parts.capture_records_and_means(
            self.teacher, teacher_vars, local_view, self.feature_layers
        )
        cached, valid = cmi_parts.bank_negatives(carry.bank, neg_rng, self.n_neg)
        dim = global_features.shape[-1]
        rows = jnp.concatenate(
            [local_features, cached[:, :dim], global_features, cached[:, dim:]], axis=0
        )
        proj = self.head.apply({"params": head_params}, rows)
        proj_local, proj_global = jnp.split(proj, 2, axis=0)
        loss_cr = cmi_parts.contrastive_loss(
            proj_local,
            proj_global,
            valid,
            self.batch_size,
            self.temperature,
            carry.bank.n_updates > 0,
        )
        loss = self.bn * loss_bn + self.oh * loss_oh + adv_weight * loss_adv + self.cr * loss_cr
        features = jnp.concatenate([local_features, global_features], axis=-1)
        parts = {"loss_bn": loss_bn, "loss_oh": loss_oh, "loss_adv": loss_adv, "loss_cr": loss_cr}
        return loss, (images, features, parts)

    def advance(
        self,
        carry: CMICarry,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        adv_weight: jax.Array,
        first_step: jax.Array | int,
        num_steps: int,
        unroll: bool = False,
    ) -> CMICarry:
        """Steps `first_step .. first_step + num_steps - 1` of the batch's optimization."""
        del bn_memory  # CMI has no momentum memory
        tx, head_tx = self.inner_optimizer(), self.head_optimizer()
        grad_fn = jax.value_and_grad(self.step_loss, argnums=(0, 1), has_aux=True)

        def body(c, k):
            (loss, (images, features, parts)), (grads, head_grads) = grad_fn(
                c.inner,
                c.head_params,
                c,
                jax.random.fold_in(c.step_rng, k),
                teacher_vars,
                student_vars,
                adv_weight,
            )
            better = loss < c.best_loss
            updates, opt_state = tx.update(grads, c.opt_state, c.inner)
            head_updates, head_opt_state = head_tx.update(
                head_grads, c.head_opt_state, c.head_params
            )
            c = c.replace(
                inner=optax.apply_updates(c.inner, updates),
                opt_state=opt_state,
                head_params=optax.apply_updates(c.head_params, head_updates),
                head_opt_state=head_opt_state,
                best_images=jnp.where(better, images, c.best_images),
                best_features=jnp.where(better, features, c.best_features),
                best_loss=jnp.where(better, loss, c.best_loss),
                first_loss=jnp.where(k == 0, loss, c.first_loss),
                last_loss=loss,
                last_parts=parts,
            )
            return c, None

        carry, _ = run_steps(body, carry, num_steps, unroll=unroll, first_step=first_step)
        return carry

    def finish(
        self, state: CMIState, carry: CMICarry, bn_memory: losses.BNMemory
    ) -> tuple[CMIState, losses.BNMemory, jax.Array, dict]:
        """The best images; the head and its optimizer kept; the best features into the bank."""
        state = state.replace(
            head_params=carry.head_params,
            head_opt_state=carry.head_opt_state,
            bank=cmi_parts.bank_add(carry.bank, carry.best_features),
        )
        metrics = dict(
            synth_loss_first=carry.first_loss,
            synth_loss_last=carry.last_loss,
            synth_best_loss=carry.best_loss,
            **{f"synth_{k}": v for k, v in carry.last_parts.items()},
        )
        return state, bn_memory, jnp.clip(carry.best_images, 0.0, 1.0), metrics


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.cmi`: CMI's own keys, the values of the original's cmi_cifar.sh with the paper's
    500 steps (`methods.cmi`).
    """
    return ml_collections.ConfigDict(
        dict(
            steps=500,  # generator steps per batch (the script has 200; the paper's row 500)
            lr_g=1e-3,
            lr_z=1e-3,
            betas=(0.5, 0.999),
            # Host-driven, unrolled chunks of this many steps ('0': one compiled lax.scan over all
            # steps). 'auto' (backend.py): chunks of <= 10 steps on CPU, one scan elsewhere.
            chunk_steps=backend.AUTO,
            cr=0.8,  # contrastive weight
            temperature=0.2,
            head_dim=256,  # projection head width
            bank_size=40960,  # memory bank rows
            n_neg=4096,  # negatives drawn per step
            local_scale=(0.25, 1.0),  # the local view's crop area fraction
            # Whose inputs give the instance features (cmi_parts.FEATURE_LAYERS): 'batchnorm' (every
            # BatchNorm's), 'stages' (each ResNet stage's first block's: the inputs of the
            # original's layer1..layer4), or 'auto', the original's rule: 'stages' for a resnet34
            # teacher, 'batchnorm' for every other.
            feature_layers="auto",
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.cmi` block (before any compute)."""
    c = s.cmi
    validate_chunk_steps(c, "synthesis.cmi")
    check_choice("synthesis.cmi.feature_layers", c.feature_layers, cmi_parts.FEATURE_LAYERS)
    if not 1 <= c.n_neg <= c.bank_size:
        raise ValueError(f"synthesis.cmi.n_neg={c.n_neg} must be in [1, bank_size={c.bank_size}].")
    if c.temperature <= 0:
        raise ValueError(f"synthesis.cmi.temperature must be > 0, got {c.temperature}.")
    low, high = c.local_scale
    if not 0 < low <= high <= 1:
        raise ValueError(
            f"synthesis.cmi.local_scale must be 0 < low <= high <= 1, got {c.local_scale}."
        )


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> CMISynthesizer:
    """The CMISynthesizer of a distillation run's config (`config.synthesis` and its `cmi` block;
    `chunk_steps` resolved: `backend.resolve`).
    """
    s = config.synthesis
    return from_block(
        CMISynthesizer,
        s.cmi,
        generator=generator_from_config(config, info),
        teacher=teacher,
        student=student,
        head=cmi_parts.MLPHead(dim=s.cmi.head_dim),
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        image_shape=tuple(info.image_shape),
        bn=s.bn,
        oh=s.oh,
        padding=s.augment.padding,
        flip=s.augment.flip,
        mean=tuple(info.mean),
        std=tuple(info.std),
        adv=s.adv,
        adv_start_epoch=adv_start_epoch(s.adv_start, config.warmup),
        batch_sharding=batch_sharding,
        feature_layers=cmi_parts.resolve_feature_layers(s.cmi.feature_layers, config.teacher.arch),
    )


__all__ = ["CMICarry", "CMIState", "CMISynthesizer", "build", "validate"]
