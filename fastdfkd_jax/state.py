"""The explicit state pytrees of the project's runs.

Everything a run needs to continue lives in one of these `flax.struct` dataclasses, so a checkpoint
of the state is a checkpoint of the run. Keys are raw `uint32[2]` PRNG keys so orbax stores them as
plain arrays.
"""

from typing import Any

import flax.struct
import jax


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
