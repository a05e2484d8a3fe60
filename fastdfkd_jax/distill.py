"""Student distillation on synthetic images: the KD loss and the pure student step."""

import flax.linen as nn
import jax
import ml_collections
import optax

from fastdfkd_jax import sharding
from fastdfkd_jax.data import augment
from fastdfkd_jax.state import ClassifierState
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis import pool as pool_lib


def student_step(
    state: ClassifierState,
    pool: pool_lib.Pool,
    teacher_vars,
    rng: jax.Array,
    *,
    student: nn.Module,
    teacher: nn.Module,
    tx: optax.GradientTransformation,
    batch_size: int,
    temperature: float,
    aug: ml_collections.ConfigDict,
    mean,
    std,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> tuple[ClassifierState, dict]:
    """One KD step on a batch drawn from the pool.

    The batch [batch_size, H, W, C] is sampled uniformly from the pool, cropped, flipped and
    normalized; the loss is KL(teacher_T || student_T) * T^2 against teacher logits only
    (no labels). `batch_sharding` (e.g. `sharding.batch_sharding(mesh)`) splits the sampled batch
    over devices; without it XLA gathers the sample onto every device and each computes it whole.

    Returns:
      (new student state, {'kd_loss'}).

    """
    sample_rng, aug_rng = jax.random.split(rng)
    images = sharding.constrain_batch(pool_lib.sample(pool, sample_rng, batch_size), batch_sharding)
    inputs = augment.augment(
        aug_rng, images, padding=aug.padding, flip=aug.flip, mean=mean, std=std
    )
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
