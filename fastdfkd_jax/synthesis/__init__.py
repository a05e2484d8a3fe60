"""Image synthesis from a frozen teacher: losses, the methods, the pool, and the method registry.

`SYNTHESIZERS` maps a config's `synthesis.method` to its `Method`: `build(config, info, teacher,
student, batch_sharding)` returns an object with the `base.Synthesizer` interface, and
`validate(config.synthesis)` checks the method's keys before any compute. A new method is a module
with those two functions and one entry here; the trainer does not change.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from fastdfkd_jax import sharding
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.synthesis import (
    contrastive,
    deepinversion,
    fastdfkd,
    generative,
    losses,
    meta_latent,
)
from fastdfkd_jax.synthesis.base import (
    ADV_STARTS,
    ChunkedSynthesis,
    PoolSynthesis,
    Synthesizer,
    synthesis_call,
)
from fastdfkd_jax.synthesis.objective import ADVERSARIAL, SYNTHESIS_AUGMENTS


class Method(NamedTuple):
    """A synthesis method of the registry.

    `version`: the version of the method's code, part of a run's fingerprint
    (`fastdfkd_jax.fingerprint`); bump it with a change that alters the method's results, so that
    finished runs and stored records of the old code are not reused.
    `needs_batchnorm(synthesis block)`: whether it reads the teacher's BatchNorm layers (checked
    before compute: `check_teacher_has_batchnorm`).
    `chunked`: its steps run as host-driven chunks on CPU (`base.ChunkedSynthesis`).
    """

    build: Callable[..., Synthesizer]
    validate: Callable[[ml_collections.ConfigDict], None]
    version: int = 1
    needs_batchnorm: Callable[[ml_collections.ConfigDict], bool] = lambda s: s.bn > 0
    chunked: bool = False


SYNTHESIZERS: dict[str, Method] = {
    "fast": Method(fastdfkd.build, fastdfkd.validate),
    "deepinversion": Method(deepinversion.build, deepinversion.validate, chunked=True),
    # CMI's instance features are the inputs of the teacher's BatchNorms, whatever `bn` is.
    "cmi": Method(
        contrastive.build, contrastive.validate, needs_batchnorm=lambda s: True, chunked=True
    ),
    "generative": Method(generative.build, generative.validate),
    "fast_meta_latent": Method(meta_latent.build, meta_latent.validate),
}


def code_version(s: ml_collections.ConfigDict) -> int:
    """The code version of the method of a `synthesis` block (`Method.version`)."""
    return SYNTHESIZERS[s.method].version


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks a `synthesis` config block: the keys every method reads, then the method's own."""
    check_choice("synthesis method", s.method, SYNTHESIZERS)
    check_choice("adversarial loss", s.adversarial, ADVERSARIAL)
    check_choice("synthesis augment", s.augment.kind, SYNTHESIS_AUGMENTS)
    check_choice("synthesis.adv_start", s.adv_start, ADV_STARTS)
    if s.g_steps < 1:
        raise ValueError(f"synthesis.g_steps must be >= 1, got {s.g_steps}.")
    if s.kd_steps_per_round < 0:
        raise ValueError(f"synthesis.kd_steps_per_round must be >= 0, got {s.kd_steps_per_round}.")
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
    check_teacher_has_batchnorm(config, info, teacher)
    batch_sharding = sharding.batch_sharding(mesh) if mesh is not None else None
    return SYNTHESIZERS[config.synthesis.method].build(
        config, info, teacher, student, batch_sharding
    )


def needs_batchnorm(s: ml_collections.ConfigDict) -> bool:
    """Whether the method of a `synthesis` block reads the teacher's BatchNorm layers
    (`Method.needs_batchnorm`: a BN-statistics loss, or CMI's features).
    """
    return SYNTHESIZERS[s.method].needs_batchnorm(s)


def is_chunked(s: ml_collections.ConfigDict) -> bool:
    """Whether the method of a `synthesis` block runs its steps as host-driven chunks on CPU."""
    return SYNTHESIZERS[s.method].chunked


def check_teacher_has_batchnorm(
    config: ml_collections.ConfigDict, info: Any, teacher: nn.Module
) -> None:
    """Raises a ValueError naming the method and the teacher when the method needs the teacher's
    BatchNorm layers and it has none (checked on shapes only: no compute).
    """
    s = config.synthesis
    if not needs_batchnorm(s):
        return

    def count(x):
        variables = teacher.init(jax.random.PRNGKey(0), x, train=False)
        return len(losses.capture_bn_inputs(teacher, variables, x, train=False)[1])

    found = []
    jax.eval_shape(lambda x: found.append(count(x)), jnp.zeros((2, *info.image_shape)))
    if not found[0]:
        raise ValueError(
            f"Method {config.method!r} (synthesis.method={s.method!r}, bn={s.bn}) needs the "
            f"teacher's BatchNorm layers, but the teacher {config.teacher.arch!r} has none."
        )


__all__ = [
    "SYNTHESIZERS",
    "Method",
    "ChunkedSynthesis",
    "PoolSynthesis",
    "Synthesizer",
    "build_synthesizer",
    "synthesis_call",
    "validate",
]
