"""The explicit state pytrees of the project's runs, and the one place each is created.

Everything a run needs to continue lives in one of these `flax.struct` dataclasses, so a checkpoint
of the state is a checkpoint of the run. Keys are raw `uint32[2]` PRNG keys so orbax stores them as
plain arrays.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fastdfkd_jax import sharding
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis import pool as pool_lib


@flax.struct.dataclass
class ClassifierState:
    """A classifier under training (teacher or student).

    Attributes:
      step: scalar int32, optimizer steps taken.
      params: the model's `params` collection.
      batch_stats: the model's `batch_stats` collection (running BN statistics).
      opt_state: the optax state of `params`.

    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}

    def apply_gradients(
        self, grads: Any, batch_stats: Any, tx: optax.GradientTransformation
    ) -> "ClassifierState":
        """One optimizer step with `grads`, and the batch statistics of the forward pass."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )


def init_classifier(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    image_shape: Sequence[int],
    variables: dict | None = None,
) -> ClassifierState:
    """Fresh parameters, BN statistics and optimizer state for `model` on `image_shape` images
    (the given `variables` instead of an initialization from `rng`, when given).
    """
    if variables is None:
        variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return ClassifierState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )


@flax.struct.dataclass
class DFKDState:
    """Everything a data-free run carries from one epoch to the next.

    Attributes:
      epoch: int32 scalar, epochs completed.
      synthesizer: the synthesizer's own state (FastDFKD: the meta generator's `GeneratorState`;
        DeepInversion: empty), created by its `init`.
      bn_memory: the teacher BN momentum statistics.
      pool: the synthetic image pool.
      student: the student's `ClassifierState`.

    """

    epoch: jax.Array
    synthesizer: Any
    bn_memory: losses.BNMemory
    pool: pool_lib.Pool
    student: ClassifierState


def create_dfkd_state(
    synthesizer: Any,
    student: nn.Module,
    tx: optax.GradientTransformation,
    teacher_vars: dict,
    *,
    image_shape: Sequence[int],
    pool_capacity: int,
    pool_dtype: str = "float32",
    pool_quantize: str = "truncate",
    student_rng: jax.Array,
    synthesizer_rng: jax.Array,
    mesh: Mesh | None = None,
    pool_images: jax.Array | None = None,
    student_variables: dict | None = None,
) -> DFKDState:
    """A run's state at epoch 0, placed on `mesh` by the sharding rules (when given).

    Args:
      synthesizer: a synthesizer of `fastdfkd_jax.synthesis` (its `init` and `init_bn_memory`).
      student, tx: the student module and its optimizer.
      teacher_vars: the teacher's variables (the BN memory starts from their running statistics).
      image_shape: (H, W, C).
      pool_capacity, pool_dtype, pool_quantize: the synthetic image pool (`pool.init_pool`).
      student_rng, synthesizer_rng: keys of the student's and the synthesizer's initialization.
      mesh: where to place the state. Given, the state is made by one compiled function that
        writes every leaf where the sharding rules put it (no host copy, and one compilation that
        the persistent cache keeps); None: made op by op where JAX puts it.
      pool_images: [N, H, W, C] in [0, 1] to put in the pool (timing and tests); None: empty.
      student_variables: the student's initial variables (a user's student); None: initialized
        from `student_rng`.
    """

    def make(teacher_vars, student_rng, synthesizer_rng, pool_images, student_variables):
        pool = pool_lib.init_pool(pool_capacity, image_shape, pool_dtype, pool_quantize)
        if pool_images is not None:
            pool = pool_lib.add(pool, pool_images)
        return DFKDState(
            epoch=jnp.zeros((), jnp.int32),
            synthesizer=synthesizer.init(synthesizer_rng),
            bn_memory=synthesizer.init_bn_memory(teacher_vars, image_shape),
            pool=pool,
            student=init_classifier(student, tx, student_rng, image_shape, student_variables),
        )

    args = (teacher_vars, student_rng, synthesizer_rng, pool_images, student_variables)
    if mesh is None:
        return make(*args)
    return jit_create(make, mesh, *args)


def jit_create(make: Any, mesh: Mesh, *args: Any) -> Any:
    """`make(*args)` (a state pytree) computed by one jitted function, placed by the rules."""
    shardings = sharding.state_shardings(jax.eval_shape(make, *args), mesh)
    return jax.jit(make, out_shardings=shardings)(*args)
