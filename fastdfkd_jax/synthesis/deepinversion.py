"""DeepInversion: optimize the pixels of each batch from noise, no generator (the baseline).

Pixels live in normalized space (u = (x - mean) / std, initialized N(0, 1)) and are optimized with
Adam for `steps` steps (2000 for DeepInv-2k) as one `lax.scan`; after every step they are clipped so
that x stays in [0, 1]. The lowest-loss iterate is returned. The objective's augmentation provides
the random roll jitter and flip. Same call signature as `FastSynthesizer.synthesize`, with an empty
synthesizer state.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from fastdfkd_jax.data import augment
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis.objective import Objective


@dataclasses.dataclass(frozen=True)
class DeepInversionSynthesizer:
    """Attributes:
    objective: the inversion objective (its augmentation: jitter and flip).
    num_classes: K, for the random targets.
    batch_size: B.
    image_shape: (H, W, C).
    steps: optimization steps per batch (>= 1).
    lr: Adam learning rate on normalized pixels.
    betas: Adam (b1, b2).
    mean, std: the dataset normalization (C floats each).
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

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"g_steps (DeepInversion steps) must be >= 1, got {self.steps}.")

    def init(self, rng: jax.Array) -> dict:
        del rng
        return {}

    def synthesize(
        self,
        state: dict,
        bn_memory: losses.BNMemory,
        teacher_vars,
        student_vars,
        rng: jax.Array,
        adv_weight: jax.Array,
    ):
        """One batch from noise. Returns (state, BN memory, best images [B,H,W,C], metrics)."""
        u_rng, y_rng, step_rng = jax.random.split(rng, 3)
        u0 = jax.random.normal(u_rng, (self.batch_size, *self.image_shape))
        targets = jax.random.randint(y_rng, (self.batch_size,), 0, self.num_classes)
        low = augment.normalize(jnp.zeros(self.image_shape[-1:]), self.mean, self.std)
        high = augment.normalize(jnp.ones(self.image_shape[-1:]), self.mean, self.std)
        tx = optax.adam(self.lr, b1=self.betas[0], b2=self.betas[1])

        def loss_fn(u, k):
            images = augment.denormalize(u, self.mean, self.std)
            loss, (records, parts) = self.objective(
                images,
                targets,
                jax.random.fold_in(step_rng, k),
                teacher_vars,
                student_vars,
                bn_memory,
                adv_weight,
            )
            return loss, (images, records, parts)

        def body(carry, k):
            u, opt_state, best_loss, best_images = carry
            (loss, (images, records, parts)), grad = jax.value_and_grad(loss_fn, has_aux=True)(u, k)
            better = loss < best_loss
            best_images = jnp.where(better, images, best_images)
            best_loss = jnp.where(better, loss, best_loss)
            updates, opt_state = tx.update(grad, opt_state, u)
            u = jnp.clip(optax.apply_updates(u, updates), low, high)
            stats = (tuple(r.mean for r in records), tuple(r.var for r in records))
            return (u, opt_state, best_loss, best_images), (loss, parts, stats)

        carry0 = (u0, tx.init(u0), jnp.asarray(jnp.inf), jnp.zeros_like(u0))
        (_, _, best_loss, best_images), (step_losses, parts, stats) = jax.lax.scan(
            body, carry0, jnp.arange(self.steps)
        )
        if self.objective.bn_momentum > 0:
            last = jax.tree.map(lambda x: x[-1], stats)
            bn_memory = losses.update_bn_memory(bn_memory, *last, self.objective.bn_momentum)
        metrics = dict(
            synth_loss_first=step_losses[0],
            synth_loss_last=step_losses[-1],
            synth_best_loss=best_loss,
            **{f"synth_{k}": v[-1] for k, v in parts.items()},
        )
        return state, bn_memory, jnp.clip(best_images, 0.0, 1.0), metrics
