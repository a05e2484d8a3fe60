"""Student distillation on synthetic images: the pure KD step, several per call, and compilation.

The student's batch comes from the synthesizer (`Synthesizer.kd_images`: the pool, or fresh
generator samples), is augmented and normalized (`kd.augment`: crop with padding and flip, or
ImageNet's resized crop and flip), and the loss is KL(teacher_T || student_T) * T^2 against
teacher logits only (no labels), per pixel for segmentation models (logits [B, H, W, K]), plus,
with `at_weight > 0`, ZSKT's attention-transfer term on the two networks' stage activations.
`kd_steps` runs several steps in one compiled call (unrolled or as a `lax.scan`, the pool sampling
inside), each step's key folded from the run's KD key and the step's index exactly as one step per
call does.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fastdfkd_jax import compilation, sharding
from fastdfkd_jax.state import ClassifierState, DFKDState
from fastdfkd_jax.synthesis import baseline_losses, losses
from fastdfkd_jax.synthesis.steps import run_steps


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
    at_weight: float = 0.0,
) -> tuple[ClassifierState, dict]:
    """One KD step on `images` [B, H, W, C] in [0, 1], augmented with `rng`.

    `augment`: `(rng, images) -> normalized inputs` (`objective.make_synthesis_augment` of the
    config's `kd.augment`).

    Returns:
      (new student state, {'kd_loss'} and, with `at_weight > 0`, 'at_loss').

    """
    inputs = augment(rng, images)
    if at_weight > 0:
        teacher_logits, teacher_maps = baseline_losses.capture_stage_activations(
            teacher, teacher_vars, inputs, train=False
        )
    else:
        teacher_logits = teacher.apply(teacher_vars, inputs, train=False)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        if at_weight > 0:
            (logits, updates), student_maps = baseline_losses.capture_stage_activations(
                student, variables, inputs, train=True, mutable=["batch_stats"]
            )
            at = baseline_losses.attention_transfer_loss(student_maps, teacher_maps)
        else:
            logits, updates = student.apply(variables, inputs, train=True, mutable=["batch_stats"])
            at = jnp.zeros(())
        kd = losses.kd_loss(logits, teacher_logits, temperature)
        return kd + at_weight * at, (updates["batch_stats"], kd, at)

    (_, (batch_stats, kd, at)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads, batch_stats, tx)
    return state, ({"kd_loss": kd, "at_loss": at} if at_weight > 0 else {"kd_loss": kd})


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


def bound_kd_step(mesh: Mesh, **step_options: Any) -> Callable[..., tuple[DFKDState, dict]]:
    """`kd_step` as `(state, teacher_vars, rng) -> (state, metrics)`, its batch split over `mesh`.

    `step_options`: `kd_step`'s keywords (see `components.kd_step_options`).
    """
    return functools.partial(kd_step, batch_sharding=sharding.batch_sharding(mesh), **step_options)


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
        bound_kd_step(mesh, **step_options),
        state,
        teacher_vars,
        rng,
        mesh=mesh,
        out_shardings=(sharding.state_shardings(state, mesh), sharding.replicated(mesh)),
        donate_argnums=0 if donate else (),
    )


def kd_steps(
    state: DFKDState,
    teacher_vars: dict,
    key: jax.Array,
    first_step: jax.Array,
    *,
    num_steps: int,
    unroll: bool,
    **kd_step_options: Any,
) -> tuple[DFKDState, dict]:
    """Steps `first_step .. first_step + num_steps - 1` (pure, jittable).

    Step i's key is `fold_in(key, i)`, as the trainer folds it for one step per call, so the
    result does not depend on `num_steps` (up to XLA's fusion choices). Returns the state and the
    metrics summed over the steps (`metric_files.Mean.add(..., count=num_steps)` averages them).
    """

    def body(state, step):
        return kd_step(state, teacher_vars, jax.random.fold_in(key, step), **kd_step_options)

    state, per_step = run_steps(body, state, num_steps, unroll=unroll, first_step=first_step)
    return state, jax.tree.map(lambda m: m.sum(0), per_step)


def compile_kd_steps(
    state: DFKDState,
    teacher_vars: dict,
    key: jax.Array,
    *,
    mesh: Mesh,
    num_steps: int,
    unroll: bool,
    donate: bool = True,
    **step_options: Any,
) -> tuple[jax.stages.Compiled, float]:
    """Compiles `kd_steps` `(state, teacher_vars, key, first_step) -> (state, summed metrics)`.

    `step_options`: `kd_step`'s keywords (see `components.kd_step_options`). Returns
    `(compiled, compile_seconds)`; with `donate` the input state's buffers are reused.
    """
    replicated = sharding.replicated(mesh)
    return compilation.aot_compile(
        functools.partial(
            kd_steps,
            num_steps=num_steps,
            unroll=unroll,
            batch_sharding=sharding.batch_sharding(mesh),
            **step_options,
        ),
        state,
        teacher_vars,
        key,
        jax.ShapeDtypeStruct((), jnp.int32),
        mesh=mesh,
        in_shardings=(sharding.state_shardings(state, mesh), replicated, replicated, replicated),
        out_shardings=(sharding.state_shardings(state, mesh), replicated),
        donate_argnums=0 if donate else (),
    )
