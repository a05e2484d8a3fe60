"""The explicit state pytrees of the project's runs.

Everything a run needs to continue lives in one of these `flax.struct` dataclasses, so a checkpoint
of the state is a checkpoint of the run. Keys are raw `uint32[2]` PRNG keys so orbax stores them as
plain arrays.
"""

from typing import Any

import flax.struct
import jax
import optax


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
        self, grads, batch_stats, tx: optax.GradientTransformation
    ) -> "ClassifierState":
        """One optimizer step with `grads`, and the batch statistics of the forward pass."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )
