"""The generative baselines DAFL, ZSKT and DFQ: one generator trained continuously.

As the original's GenerativeSynthesizer (zju-vipa/Fast-Datafree, `datafree/synthesis/
generative.py`): one persistent generator G and its Adam. One synthesis call = `g_steps` generator
steps (1 in every original script), each on a fresh z ~ N(0, I) [B, nz] (no latent optimization, no
augmentation), minimizing

    adv * (-KL(teacher || student))        unmasked, T = 1 (ZSKT, DFQ)
  + bn * L_bn(teacher)                      BN statistics, no momentum (DFQ)
  + oh * CE(teacher, its own argmax)        pseudo labels (DAFL, DFQ)
  + act * (-mean |penultimate features|)    DAFL's activation loss
  + balance * sum_k p_k log p_k             information entropy of the batch's mean prediction

(`baseline_losses`). The student then takes `kd_steps_per_round` KD steps, each on a FRESH batch
of G (train-mode BatchNorm, as the original's `sample()`): the call draws those batches right after
its generator steps into the state (`kd_batches`), and `kd_images` hands out the one of the current
student step, so the sampling time counts as synthesis time, as the original counts it.

The original builds these methods with the teacher in the student's place (`adversary='teacher'`),
which makes the adversarial term identically zero (ZSKT's generator then never moves); the default
`adversary='student'` is the fix.
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
from fastdfkd_jax.models import probes
from fastdfkd_jax.synthesis import baseline_losses, losses
from fastdfkd_jax.synthesis.base import (
    PoolSynthesis,
    adv_start_epoch,
    from_block,
    generator_from_config,
)
from fastdfkd_jax.synthesis.steps import run_steps

ADVERSARIES = ("student", "teacher")


@flax.struct.dataclass
class GenerativeState:
    """The generator, its optimizer, and the student's KD batches of the current round.

    Attributes:
      params, batch_stats: the generator's variables (BN always uses batch statistics).
      opt_state: the generator's Adam state.
      kd_batches: float32 [kd_steps_per_round, kd_batch, H, W, C] in [0, 1]: fresh samples of the
        generator after the round's generator steps, one batch per KD step.
    """

    params: Any
    batch_stats: Any
    opt_state: Any
    kd_batches: jax.Array


@dataclasses.dataclass(frozen=True)
class GenerativeObjective:
    """The generator's loss (module docstring) for one teacher/student pair.

    Attributes:
      teacher, student: the frozen teacher and the student (both evaluated in eval mode).
      mean, std: the dataset normalization (generator images are normalized, not augmented).
      adv, bn, oh, act, balance: the loss weights (`adv` is the full weight; the call's
        `adv_weight` replaces it so the schedule can switch it).
      adversary: 'student' (the fix) or 'teacher' (the original: the term is identically zero).
    """

    teacher: nn.Module
    student: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bn: float
    oh: float
    act: float
    balance: float
    adversary: str = "student"
    bn_momentum: float = 0.0  # no momentum memory (read by the shared state code)

    def __call__(
        self, images: jax.Array, teacher_vars: dict, student_vars: dict, adv_weight: jax.Array
    ) -> tuple[jax.Array, dict]:
        """Loss of generator `images` [B, H, W, C] in [0, 1]; returns (scalar, its terms)."""
        x = augment.normalize(images, self.mean, self.std)
        t_logits, records, features = capture_teacher(self.teacher, teacher_vars, x)
        if self.adversary == "student":
            s_logits = self.student.apply(student_vars, x, train=False)
        else:
            s_logits = t_logits
        # A segmentation teacher's logits [B, H, W, K]: every pixel a row, so each term is per
        # pixel (the information entropy is that of the mean prediction over batch and pixels).
        num_classes = t_logits.shape[-1]
        t_logits, s_logits = (
            t_logits.reshape(-1, num_classes),
            s_logits.reshape(-1, num_classes),
        )
        parts = {
            "loss_adv": baseline_losses.generative_adversarial_loss(s_logits, t_logits),
            "loss_bn": losses.bn_statistics_loss(records),
            "loss_oh": baseline_losses.pseudo_label_loss(t_logits),
            "loss_act": baseline_losses.activation_loss(features),
            "loss_balance": baseline_losses.information_entropy_loss(t_logits),
        }
        loss = (
            adv_weight * parts["loss_adv"]
            + self.bn * parts["loss_bn"]
            + self.oh * parts["loss_oh"]
            + self.act * parts["loss_act"]
            + self.balance * parts["loss_balance"]
        )
        return loss, parts


def capture_teacher(
    teacher: nn.Module, teacher_vars: dict, x: jax.Array
) -> tuple[jax.Array, list[losses.BNRecord], jax.Array]:
    """One eval-mode teacher pass: logits [B, K] (or [B, H, W, K]), its BN records, its
    penultimate features [B, F] (or [B, h, w, F]).

    The features are the input of the teacher's classifier, the original's
    `teacher(x, return_features=True)[1]`: its last `nn.Dense`, or, for a segmentation teacher
    (no Dense), its last `nn.Conv` (DeepLab's 1x1 classifier, before the upsampling).
    """
    records: list[losses.BNRecord] = []
    dense_inputs: list[jax.Array] = []
    conv_inputs: list[jax.Array] = []

    def record(call: probes.LayerCall) -> None:
        if call.kind == probes.BATCHNORM:
            records.append(losses.bn_record(call))
        elif call.kind == probes.DENSE:
            dense_inputs.append(call.inputs)
        elif call.kind == probes.CONV:
            conv_inputs.append(call.inputs)

    with probes.observe(record):
        logits = teacher.apply(teacher_vars, x, train=False)
    if dense_inputs:
        return logits, records, dense_inputs[-1]
    if logits.ndim == 4 and conv_inputs:
        return logits, records, conv_inputs[-1]
    raise ValueError(
        f"The teacher {type(teacher).__name__} has no nn.Dense classifier (nor, for a "
        "segmentation teacher, a final nn.Conv)."
    )


@dataclasses.dataclass(frozen=True)
class GenerativeSynthesizer(PoolSynthesis):
    """DAFL / ZSKT / DFQ (module docstring). Static configuration; all state is passed in and out.

    Attributes:
      generator: the generator module (`z [B, nz] -> images [B, H, W, C]` in [0, 1]).
      objective: the generator's loss.
      batch_size: B, generator batch of a generator step.
      kd_batch_size: the student's KD batch.
      kd_steps_per_round: student steps (and fresh batches) after each call.
      g_steps: generator steps per call.
      lr_g, betas: the generator's Adam.
      rounds_per_epoch: calls per epoch (`kd.steps / kd_steps_per_round`).
      batch_sharding: how to split batch-leading arrays made inside the call over devices.
      adv, adv_start_epoch: the adversarial weight, from epoch `adv_start_epoch` on (0 before).
      unroll: run the generator steps unrolled or as a rolled `lax.scan` (`steps.run_steps`).
    """

    generator: nn.Module
    objective: GenerativeObjective
    batch_size: int
    kd_batch_size: int
    kd_steps_per_round: int
    g_steps: int
    lr_g: float
    betas: tuple[float, float]
    rounds_per_epoch: int = 1
    batch_sharding: jax.sharding.Sharding | None = None
    adv: float = 0.0
    adv_start_epoch: int = 0
    unroll: bool = True

    def __post_init__(self):
        if self.kd_steps_per_round < 1:
            raise ValueError(
                f"A generative method needs synthesis.generative.kd_steps_per_round >= 1, got "
                f"{self.kd_steps_per_round}."
            )
        check_choice("synthesis.generative.adversary", self.objective.adversary, ADVERSARIES)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.lr_g, b1=self.betas[0], b2=self.betas[1])

    def sample(self, params: Any, batch_stats: Any, rng: jax.Array, batch: int) -> jax.Array:
        """A fresh batch of the generator, [batch, H, W, C] in [0, 1] (its own batch statistics)."""
        z = sharding.constrain_batch(
            jax.random.normal(rng, (batch, *self.generator.latent_shape)), self.batch_sharding
        )
        images, _ = self.generator.apply(
            {"params": params, "batch_stats": batch_stats}, z, train=True, mutable=["batch_stats"]
        )
        return sharding.constrain_batch(images, self.batch_sharding)

    def init(self, rng: jax.Array) -> GenerativeState:
        z = jnp.zeros((self.batch_size, *self.generator.latent_shape))
        variables = self.generator.init(rng, z, train=True)
        params, batch_stats = variables["params"], variables["batch_stats"]
        shape = jax.eval_shape(
            lambda p, b, r: self.sample(p, b, r, self.kd_batch_size), params, batch_stats, rng
        ).shape
        return GenerativeState(
            params=params,
            batch_stats=batch_stats,
            opt_state=self.optimizer().init(params),
            kd_batches=jnp.zeros((self.kd_steps_per_round, *shape), jnp.float32),
        )

    def synthesize(
        self,
        state: GenerativeState,
        bn_memory: losses.BNMemory,
        teacher_vars: dict,
        student_vars: dict,
        rng: jax.Array,
        adv_weight: jax.Array,
    ) -> tuple[GenerativeState, losses.BNMemory, jax.Array, dict]:
        """`g_steps` generator steps, then the round's fresh KD batches.

        Returns:
          (state, BN memory (unchanged), the last step's images [B, H, W, C], metrics).
        """
        step_rng, kd_rng = jax.random.split(rng)
        tx = self.optimizer()

        def loss_fn(params, z_rng):
            images = self.sample(params, state.batch_stats, z_rng, self.batch_size)
            loss, parts = self.objective(images, teacher_vars, student_vars, adv_weight)
            return loss, (images, parts)

        def body(carry, k):
            params, opt_state, _ = carry
            (loss, (images, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, jax.random.fold_in(step_rng, k)
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, images), (loss, parts)

        images0 = jnp.zeros(jax.eval_shape(loss_fn, state.params, step_rng)[1][0].shape)
        (params, opt_state, images), (step_losses, parts) = run_steps(
            body, (state.params, state.opt_state, images0), self.g_steps, unroll=self.unroll
        )
        kd_keys = jax.random.split(kd_rng, self.kd_steps_per_round)
        kd_batches = jax.lax.stop_gradient(
            jax.vmap(lambda key: self.sample(params, state.batch_stats, key, self.kd_batch_size))(
                kd_keys
            )
        )
        state = state.replace(params=params, opt_state=opt_state, kd_batches=kd_batches)
        metrics = dict(
            synth_loss_first=step_losses[0],
            synth_loss_last=step_losses[-1],
            **{f"synth_{k}": v[-1] for k, v in parts.items()},
        )
        return state, bn_memory, images, metrics

    def kd_images(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        """The current student step's fresh batch of the generator, [B, H, W, C] in [0, 1].

        Step s of a round (`student.step % kd_steps_per_round`: every round has exactly that many
        KD steps) takes batch s of the round's `kd_batches`; `rng` is unused.
        """
        del rng
        if batch_size != self.kd_batch_size:
            raise ValueError(
                f"kd_images asked for {batch_size} images; this synthesizer samples batches of "
                f"{self.kd_batch_size} (kd.batch_size)."
            )
        index = state.student.step % self.kd_steps_per_round
        return state.synthesizer.kd_batches[index]


def config_block() -> ml_collections.ConfigDict:
    """`synthesis.generative`: the generative baselines' own keys, at the original scripts' common
    values (`methods.generative` sets each method's weights and student steps).
    """
    return ml_collections.ConfigDict(
        dict(
            g_steps=1,  # generator steps per round (1 in every original script)
            lr_g=1e-3,
            betas=(0.5, 0.999),
            # Student steps after each synthesis call: kd.steps / kd_steps_per_round rounds of (one
            # synthesis call, kd_steps_per_round student steps) per epoch (the original's kd_steps:
            # DAFL, ZSKT 5, DFQ 10).
            kd_steps_per_round=5,
            # The generator steps unrolled ('true') or a rolled lax.scan ('false'); 'auto'
            # (backend.py): unrolled on CPU, rolled elsewhere.
            unroll=backend.AUTO,
            # The student whose disagreement the generator maximizes: 'student' (a fix) or
            # 'teacher' (the original builds these methods with student=teacher, which makes the
            # adversarial term identically zero).
            adversary="student",
            act=0.0,  # DAFL's activation loss weight (-mean |penultimate teacher features|)
            balance=0.0,  # DAFL / DFQ information-entropy weight (class balance of the batch)
        )
    )


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks the `synthesis.generative` block (before any compute)."""
    block = s.generative
    if block.kd_steps_per_round < 1:
        raise ValueError(
            f"synthesis.generative.kd_steps_per_round must be >= 1 (the student steps per "
            f"generator round), got {block.kd_steps_per_round}."
        )
    check_choice("synthesis.generative.adversary", block.adversary, ADVERSARIES)


def build(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> GenerativeSynthesizer:
    """The GenerativeSynthesizer of a distillation run's config (`config.synthesis` and its
    `generative` block; `unroll` resolved: `backend.resolve`).
    """
    s, block = config.synthesis, config.synthesis.generative
    objective = from_block(
        GenerativeObjective,
        block,
        teacher=teacher,
        student=student,
        mean=tuple(info.mean),
        std=tuple(info.std),
        bn=s.bn,
        oh=s.oh,
    )
    return from_block(
        GenerativeSynthesizer,
        block,
        generator=generator_from_config(config, info),
        objective=objective,
        batch_size=s.batch_size,
        kd_batch_size=config.kd.batch_size,
        rounds_per_epoch=config.kd.steps // block.kd_steps_per_round,
        batch_sharding=batch_sharding,
        adv=s.adv,
        adv_start_epoch=adv_start_epoch(s.adv_start, config.warmup),
    )
