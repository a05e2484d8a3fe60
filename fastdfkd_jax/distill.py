"""Student distillation on synthetic images: the pure KD step and its compilation.

The student's batch comes from the synthesizer (`Synthesizer.kd_images`: the pool, or fresh
generator samples), is augmented and normalized (`kd.augment`: crop with padding and flip, or
ImageNet's resized crop and flip), and the loss is KL(teacher_T || student_T) * T^2 against
teacher logits only (no labels), per pixel for segmentation models (logits [B, H, W, K]).
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import optax
from jax.sharding import Mesh

from fastdfkd_jax import compilation, sharding
from fastdfkd_jax.state import ClassifierState, DFKDState
from fastdfkd_jax.synthesis import losses


def student_step(
    state: ClassifierState,
    images: jax.Array,
    teacher_vars: dict,
    rng: jax.Array,
    *,
    student: nn.Module,
    teacher: nn.Module,
    tx: optax.GradientTransformation,
    temperature: float,
    augment: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[ClassifierState, dict]:
    """One KD step on `images` [B, H, W, C] in [0, 1], augmented with `rng`.

    `augment`: `(rng, images) -> normalized inputs` (`objective.make_synthesis_augment` of the
    config's `kd.augment`).

    Returns:
      (new student state, {'kd_loss'}).

    """
    inputs = augment(rng, images)
    teacher_logits = teacher.apply(teacher_vars, inputs, train=False)

    def loss_fn(params):
        logits, updates = student.apply(
            {"params": params, "batch_stats": state.batch_stats},
            inputs,
            train=True,
            mutable=["batch_stats"],
        )
        return losses.kd_loss(logits, teacher_logits, temperature), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads, batch_stats, tx)
    return state, {"kd_loss": loss}


def kd_step(
    state: DFKDState,
    teacher_vars: dict,
    rng: jax.Array,
    *,
    synthesizer: Any,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
    **step_options: Any,
) -> tuple[DFKDState, dict]:
    """One student step on a batch of the synthesizer's `kd_images` (pure, jittable).

    `batch_sharding` (e.g. `sharding.batch_sharding(mesh)`) splits the batch over devices; without
    it XLA gathers the sample onto every device and each computes it whole. `step_options` are
    `student_step`'s keywords.
    """
    sample_rng, aug_rng = jax.random.split(rng)
    images = sharding.constrain_batch(
        synthesizer.kd_images(state, sample_rng, batch_size), batch_sharding
    )
    student, metrics = student_step(state.student, images, teacher_vars, aug_rng, **step_options)
    return state.replace(student=student), metrics


def compile_kd_step(
    state: DFKDState,
    teacher_vars: dict,
    rng: jax.Array,
    *,
    mesh: Mesh,
    donate: bool = True,
    **step_options: Any,
) -> tuple[jax.stages.Compiled, float]:
    """Compiles `kd_step` `(state, teacher_vars, rng) -> (state, metrics)` on `mesh`.

    `step_options`: `kd_step`'s keywords (see `components.kd_step_options`). Returns
    `(compiled, compile_seconds)`; with `donate` the input state's buffers are reused.
    """
    return compilation.aot_compile(
        functools.partial(kd_step, batch_sharding=sharding.batch_sharding(mesh), **step_options),
        state,
        teacher_vars,
        rng,
        mesh=mesh,
        out_shardings=(sharding.state_shardings(state, mesh), sharding.replicated(mesh)),
        donate_argnums=0 if donate else (),
    )
