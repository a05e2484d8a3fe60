"""Image synthesis from a frozen teacher: losses, the methods, the pool, and the method registry.

`SYNTHESIZERS` maps a config's `synthesis.method` to its `Method`: `build(config, info, teacher,
student, batch_sharding)` returns an object with the `base.Synthesizer` interface, and
`validate(config.synthesis)` checks the method's keys before any compute. A new method is a module
with those two functions and one entry here; the trainer does not change.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import ml_collections
from jax.sharding import Mesh

from fastdfkd_jax import sharding
from fastdfkd_jax.synthesis import deepinversion, fastdfkd, meta_latent
from fastdfkd_jax.synthesis.base import PoolSynthesis, Synthesizer, synthesis_call
from fastdfkd_jax.synthesis.objective import ADVERSARIAL, SYNTHESIS_AUGMENTS


class Method(NamedTuple):
    """A synthesis method of the registry."""

    build: Callable[..., Synthesizer]
    validate: Callable[[ml_collections.ConfigDict], None]


SYNTHESIZERS: dict[str, Method] = {
    "fast": Method(fastdfkd.build, fastdfkd.validate),
    "deepinversion": Method(deepinversion.build, deepinversion.validate),
    "fast_meta_latent": Method(meta_latent.build, meta_latent.validate),
}


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks a `synthesis` config block: the keys every method reads, then the method's own."""
    if s.method not in SYNTHESIZERS:
        raise ValueError(
            f"Unknown synthesis method {s.method!r}; choose one of {tuple(SYNTHESIZERS)}."
        )
    if s.adversarial not in ADVERSARIAL:
        raise ValueError(
            f"Unknown adversarial loss {s.adversarial!r}; choose one of {ADVERSARIAL}."
        )
    if s.augment.kind not in SYNTHESIS_AUGMENTS:
        raise ValueError(
            f"Unknown synthesis augment {s.augment.kind!r}; choose one of {SYNTHESIS_AUGMENTS}."
        )
    if s.g_steps < 1:
        raise ValueError(f"synthesis.g_steps must be >= 1, got {s.g_steps}.")
    SYNTHESIZERS[s.method].validate(s)


def build_synthesizer(
    config: ml_collections.ConfigDict,
    info: Any,
    teacher: nn.Module,
    student: nn.Module,
    mesh: Mesh | None = None,
) -> Synthesizer:
    """The synthesizer that `config.synthesis` describes, its batches split over `mesh`'s `data`."""
    validate(config.synthesis)
    batch_sharding = sharding.batch_sharding(mesh) if mesh is not None else None
    return SYNTHESIZERS[config.synthesis.method].build(
        config, info, teacher, student, batch_sharding
    )


__all__ = [
    "SYNTHESIZERS",
    "Method",
    "PoolSynthesis",
    "Synthesizer",
    "build_synthesizer",
    "synthesis_call",
    "validate",
]
