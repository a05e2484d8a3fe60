"""Image synthesis from a frozen teacher: losses, the methods, the pool, and the method registry.

`SYNTHESIZERS` maps a config's `synthesis.method` to its `Method`: `build(config, info, teacher,
student, batch_sharding)` returns an object with the `base.Synthesizer` interface, and
`validate(config.synthesis)` checks the method's keys before any compute. Each method reads the
shared keys of the `synthesis` block (batch size, loss weights, augmentation, generator) and its
own block of it (`synthesis.fast`, `synthesis.deepinversion`, ...: `BLOCKS`, each declared with its
defaults by the method's module). A new method is a module with `config_block`, `validate` and
`build`, and one entry in each of `BLOCKS` and `SYNTHESIZERS`; the trainer does not change.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from fastdfkd_jax import data, sharding
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.synthesis import (
    cmi,
    deepinversion,
    fastdfkd,
    generative,
    losses,
    meta_latent,
    nayer,
)
from fastdfkd_jax.synthesis.base import (
    ADV_STARTS,
    ChunkedSynthesis,
    PoolSynthesis,
    Synthesizer,
    synthesis_call,
)
from fastdfkd_jax.synthesis.objective import ADVERSARIAL, SYNTHESIS_AUGMENTS

# A method's own config block (`synthesis.<name>`) -> the function that makes it with its defaults.
BLOCKS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "fast": fastdfkd.config_block,
    "meta_latent": meta_latent.config_block,
    "deepinversion": deepinversion.config_block,
    "cmi": cmi.config_block,
    "generative": generative.config_block,
    "nayer": nayer.config_block,
}


class Method(NamedTuple):
    """A synthesis method of the registry.

    `blocks`: the config blocks of `BLOCKS` it reads (`synthesis.<block>`), the first holding its
    `steps_key`: the inner steps of one synthesis call (what the benchmark shortens and times; a
    method with none makes each call in one step).
    `version`: the version of the method's code, part of a run's fingerprint
    (`fastdfkd_jax.fingerprint`); bump it with a change that alters the method's results, so that
    finished runs and stored records of the old code are not reused.
    `needs_batchnorm(synthesis block)`: whether it reads the teacher's BatchNorm layers (checked
    before compute: `check_teacher_has_batchnorm`).
    `chunked`: its steps run as host-driven chunks on CPU (`base.ChunkedSynthesis`).
    `kd_steps_per_round(synthesis block)`: the student steps after each of an epoch's synthesis
    rounds; 0: one round, then all of `kd.steps`.
    `calls_per_round(config, epoch)`: the synthesis calls of each round of 0-based `epoch` (NAYER
    makes more while warming up); its synthesizer's `calls_per_round` says the same at run time.
    `batch_multiple(config)`: what the synthesis batch's share on each device must be a multiple
    of (NAYER: the class count).
    `kd_from_pool`: the student's KD batches are draws from the pool (a generative method trains
    it on fresh samples of its generator instead: the pool's size does not matter to it).
    """

    build: Callable[..., Synthesizer]
    validate: Callable[[ml_collections.ConfigDict], None]
    blocks: tuple[str, ...] = ()
    steps_key: str | None = None
    version: int = 1
    needs_batchnorm: Callable[[ml_collections.ConfigDict], bool] = lambda s: s.bn > 0
    chunked: bool = False
    kd_steps_per_round: Callable[[ml_collections.ConfigDict], int] = lambda s: 0
    calls_per_round: Callable[[ml_collections.ConfigDict, int], int] = lambda config, epoch: 1
    batch_multiple: Callable[[ml_collections.ConfigDict], int] = lambda config: 1
    kd_from_pool: bool = True


SYNTHESIZERS: dict[str, Method] = {
    "fast": Method(fastdfkd.build, fastdfkd.validate, ("fast",), "g_steps"),
    "deepinversion": Method(
        deepinversion.build, deepinversion.validate, ("deepinversion",), "steps", chunked=True
    ),
    # CMI's instance features are the inputs of the teacher's BatchNorms, whatever `bn` is.
    "cmi": Method(
        cmi.build,
        cmi.validate,
        ("cmi",),
        "steps",
        needs_batchnorm=lambda s: True,
        chunked=True,
    ),
    "generative": Method(
        generative.build,
        generative.validate,
        ("generative",),
        "g_steps",
        kd_steps_per_round=lambda s: s.generative.kd_steps_per_round,
        kd_from_pool=False,
    ),
    "fast_meta_latent": Method(
        meta_latent.build, meta_latent.validate, ("fast", "meta_latent"), "g_steps"
    ),
    "nayer": Method(
        nayer.build,
        nayer.validate,
        ("nayer",),
        "g_steps",
        calls_per_round=lambda config, epoch: (
            config.synthesis.nayer.warmup_calls
            if epoch < config.warmup
            else config.synthesis.nayer.calls
        ),
        batch_multiple=lambda config: data.get_info(config.dataset.name).num_classes,
    ),
}


def config_blocks() -> dict[str, ml_collections.ConfigDict]:
    """Every method's own block at its defaults (`BLOCKS`), for the `synthesis` config block."""
    return {name: make() for name, make in BLOCKS.items()}


def method_of(s: ml_collections.ConfigDict) -> Method:
    """The `Method` of a `synthesis` block (a ValueError naming the choices for an unknown one)."""
    check_choice("synthesis method", s.method, SYNTHESIZERS)
    return SYNTHESIZERS[s.method]


def own_block(s: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The block of a `synthesis` config block that holds its method's steps (its first block)."""
    return s[method_of(s).blocks[0]]


def steps_key(s: ml_collections.ConfigDict) -> str:
    """The dotted config key of the inner steps per call of a `synthesis` block's method."""
    method = method_of(s)
    return f"synthesis.{method.blocks[0]}.{method.steps_key}"


def inner_steps(s: ml_collections.ConfigDict) -> int:
    """The inner steps of one synthesis call of a `synthesis` block's method."""
    method = method_of(s)
    return own_block(s)[method.steps_key] if method.steps_key else 1


def set_inner_steps(s: ml_collections.ConfigDict, steps: int) -> None:
    """Sets the inner steps of one synthesis call of a `synthesis` block's method."""
    method = method_of(s)
    if method.steps_key:
        own_block(s)[method.steps_key] = steps
    elif steps != 1:
        raise ValueError(f"Method {s.method!r} has no inner steps to set to {steps}.")


def kd_steps_per_round(s: ml_collections.ConfigDict) -> int:
    """The student steps after each synthesis call of a `synthesis` block's method (0: one call
    per epoch, then all of `kd.steps`).
    """
    return method_of(s).kd_steps_per_round(s)


def calls_per_round(config: ml_collections.ConfigDict, epoch: int) -> int:
    """The synthesis calls of each round of 0-based `epoch` of a distillation config's method."""
    return method_of(config.synthesis).calls_per_round(config, epoch)


def calls_in_epoch(config: ml_collections.ConfigDict, epoch: int) -> int:
    """The synthesis calls of 0-based `epoch`: its rounds (1, or kd.steps / kd_steps_per_round for
    generative methods) times the method's calls per round (NAYER's depend on the epoch).
    """
    per_round = kd_steps_per_round(config.synthesis)
    rounds = config.kd.steps // per_round if per_round else 1
    return rounds * calls_per_round(config, epoch)


def calls_in_run(config: ml_collections.ConfigDict) -> int:
    """The synthesis calls of a distillation config's whole run (what the trainer's summary
    counts).
    """
    return sum(calls_in_epoch(config, epoch) for epoch in range(config.epochs))


def images_in_run(config: ml_collections.ConfigDict) -> int:
    """Every image a distillation config's run synthesizes: its calls times the batch of a call."""
    return calls_in_run(config) * config.synthesis.batch_size


def pool_overflow(config: ml_collections.ConfigDict) -> str | None:
    """A line saying that the run's student will not see every image it synthesizes, or None.

    The original code of every pool method (FastDFKD, DeepInversion, CMI, NAYER) keeps all of a
    run's images. The presets size `pool.capacity` to their own schedule (except where a smaller
    pool is a documented difference: ImageNet's 140,000), and an override of the schedule made
    afterwards (more epochs, a larger batch) does not resize it: the pool, a ring buffer, then
    overwrites its oldest images. Not an error (a smaller pool can be a choice), but a visible one.
    """
    if not method_of(config.synthesis).kd_from_pool:
        return None
    images = images_in_run(config)
    if config.pool.capacity >= images:
        return None
    return (
        f"pool.capacity={config.pool.capacity} holds fewer than the {images} images this run "
        f"synthesizes: once it is full each call overwrites the oldest (the original keeps them "
        f"all; pool.capacity={images} would)."
    )


def batch_multiple(config: ml_collections.ConfigDict) -> int:
    """What each device's share of a distillation config's synthesis batch must be a multiple of."""
    return method_of(config.synthesis).batch_multiple(config)


def method_blocks(method: str) -> tuple[str, ...]:
    """The own config blocks of the synthesis method `method` (none for an unknown name)."""
    return SYNTHESIZERS[method].blocks if method in SYNTHESIZERS else ()


def code_version(s: ml_collections.ConfigDict) -> int:
    """The code version of the method of a `synthesis` block (`Method.version`)."""
    return SYNTHESIZERS[s.method].version


def validate(s: ml_collections.ConfigDict) -> None:
    """Checks a `synthesis` config block: the keys every method reads, then the method's own."""
    method_of(s)
    check_choice("adversarial loss", s.adversarial, ADVERSARIAL)
    check_choice("synthesis augment", s.augment.kind, SYNTHESIS_AUGMENTS)
    check_choice("synthesis.adv_start", s.adv_start, ADV_STARTS)
    if method_of(s).steps_key and inner_steps(s) < 1:
        raise ValueError(f"{steps_key(s)} must be >= 1, got {inner_steps(s)}.")
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
    "BLOCKS",
    "build_synthesizer",
    "config_blocks",
    "inner_steps",
    "batch_multiple",
    "calls_per_round",
    "kd_steps_per_round",
    "set_inner_steps",
    "steps_key",
    "synthesis_call",
    "validate",
]
