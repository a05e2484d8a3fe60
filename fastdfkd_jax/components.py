"""The parts of a data-free distillation run, built from its config in one place.

`build(config)` makes the mesh, resolves the config's backend-dependent 'auto' keys for its
platform (`backend.resolve`: the one place they are resolved; the synthesizers receive concrete
values), checks the precision policy against the devices, loads and checks the teacher, creates
the student, the synthesizer (from the registry `synthesis.SYNTHESIZERS`) and the student's
optimizer, every model computing in the policy's dtype; `init_state` makes the run's fresh
`DFKDState` from them with the keys of `run_keys`. The trainer, the benchmark,
scripts/bench_scaling.py and the tests all start here.
"""

import dataclasses
from typing import Any

import flax.core
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from fastdfkd_jax import backend, checkpoint, checks, models, optim, precision, run_data, sharding
from fastdfkd_jax.state import DFKDState, create_dfkd_state
from fastdfkd_jax.synthesis import Synthesizer, build_synthesizer
from fastdfkd_jax.synthesis.objective import make_synthesis_augment

# The run's named keys, split from `config.seed` in this order (resumes replay them exactly).
RUN_KEYS = ("student", "synthesizer_init", "synthesis", "kd", "epoch_start")


@dataclasses.dataclass(frozen=True)
class Components:
    """Everything static a distillation run computes with (no state).

    Attributes:
      config: the run's config, its 'auto' keys resolved for the mesh's platform.
      backend_choices: those keys' values ({'synthesis.fast.unroll': True, ...}).
      info: the dataset's `DatasetInfo`.
      mesh: the device mesh (axis `data`).
      teacher, teacher_vars: the frozen teacher and its variables, replicated on `mesh`.
      student: the student module.
      synthesizer: the synthesis method (`synthesis.Synthesizer`).
      tx, schedule: the student's optimizer and its learning rate as a function of the step.
      student_variables: the student's initial variables when given (the Python API), else None
        (initialized from the run's `student` key).
    """

    config: ml_collections.ConfigDict
    backend_choices: dict
    info: Any
    mesh: Mesh
    teacher: nn.Module
    teacher_vars: dict
    student: nn.Module
    synthesizer: Synthesizer
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    student_variables: dict | None = None


def load_teacher(
    config: ml_collections.ConfigDict, info: Any, directory: str | None = None
) -> tuple[nn.Module, dict]:
    """The teacher module and variables of `config.teacher` (or of the teacher `directory`, e.g.
    a smoke test's), checked against the dataset.
    """
    directory = directory or config.teacher.checkpoint
    if not directory:
        raise checks.UserInputError(
            "config.teacher.checkpoint is empty: pass --config.teacher.checkpoint=DIR, a teacher "
            "directory written by teacher training (WORKDIR/teacher) or the PyTorch import."
        )
    meta, variables = checkpoint.load_teacher(
        directory, arch=config.teacher.arch, num_classes=info.num_classes
    )
    if tuple(meta["image_shape"]) != tuple(info.image_shape):
        raise ValueError(
            f"The teacher at {directory!r} was trained on "
            f"{tuple(meta['image_shape'])} images ({meta['dataset']}), but {info.name} has "
            f"{tuple(info.image_shape)}."
        )
    check_normalization(meta, info, directory)
    kwargs = models.parse_kwargs(config.teacher.kwargs, "teacher.kwargs")
    recorded = meta.get("kwargs", {})
    if kwargs and recorded and kwargs != recorded:
        raise ValueError(
            f"teacher.kwargs={config.teacher.kwargs!r}, but the teacher at {directory!r} was made "
            f"with {recorded!r}."
        )
    teacher = models.create_model(
        config.teacher.arch,
        num_classes=info.num_classes,
        dtype=precision.compute_dtype(config.precision),
        **(kwargs or recorded),
    )
    models.check_fits(teacher, info, "teacher")
    check_variables(teacher, variables, info, f"The teacher at {directory!r}")
    return teacher, variables


# How far a model directory's recorded normalization may be from the data's (float32 rounding).
NORMALIZATION_TOLERANCE = 1e-6


def check_normalization(meta: dict, info: Any, directory: str) -> None:
    """Raises a ValueError when a model directory records another input normalization than the
    dataset's (its inputs would be normalized differently from its training).
    """
    if "mean" not in meta:
        return
    for key, recorded, ours in (("mean", meta["mean"], info.mean), ("std", meta["std"], info.std)):
        if not np.allclose(recorded, ours, rtol=0, atol=NORMALIZATION_TOLERANCE):
            raise ValueError(
                f"The model at {directory!r} takes inputs normalized with {key} {recorded}, but "
                f"{info.name} has {list(ours)}."
            )


def check_variables(model: nn.Module, variables: dict, info: Any, what: str) -> None:
    """Raises a ValueError naming `what` and the first differing variable when `variables` are
    not shaped as `model`'s for the dataset's images and classes (shapes only: no compute).
    """
    expected = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *info.image_shape)), train=False)
    )
    got = {
        jax.tree_util.keystr(path): np.shape(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(flax.core.unfreeze(variables))[0]
    }
    want = {
        jax.tree_util.keystr(path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(flax.core.unfreeze(expected))[0]
    }
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            raise ValueError(
                f"{what}: its variables do not fit a {type(model).__name__} for "
                f"{info.image_shape} images and {info.num_classes} classes: {name} is "
                f"{got.get(name, 'missing')}, expected {want.get(name, 'none')}."
            )


def given_model(
    model: tuple[nn.Module, dict | None], info: Any, what: str
) -> tuple[nn.Module, dict | None]:
    """A model given in code (the Python API): `(module, variables or None)`, checked against the
    dataset before any compute (it must map its images to its classes; variables must fit).
    """
    module, variables = model
    models.check_fits(module, info, what)
    if variables is not None:
        check_variables(module, variables, info, f"The given {what}")
    return module, variables


def kd_optimizer(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The student's optimizer and schedule: `kd.optimizer` over the run's KD steps, its rates
    scaled to the KD batch by its `lr_scaling` rule.
    """
    cfg = optim.scale_learning_rate(config.kd.optimizer, config.kd.batch_size)
    total_steps = (config.epochs - config.warmup) * config.kd.steps
    per_change = config.kd.steps if config.kd.schedule_per_epoch else 1
    return (
        optim.make_optimizer(cfg, total_steps, per_change),
        optim.make_schedule(cfg, total_steps, per_change),
    )


def build(
    config: ml_collections.ConfigDict,
    mesh: Mesh | None = None,
    *,
    teacher: tuple[nn.Module, dict] | None = None,
    student: tuple[nn.Module, dict | None] | None = None,
) -> Components:
    """The run's parts. `mesh` defaults to `config.mesh`'s; `teacher` (module, variables) to the
    checkpoint of `config.teacher` (loaded and checked); `student` (module, initial variables or
    None) to a fresh `config.student`. A given module computes as it was made.
    """
    mesh = mesh if mesh is not None else sharding.make_mesh(config.mesh)
    precision.check_backend(config.precision, mesh.devices.flat)
    choices = backend.choices(config, backend.platform_of(mesh))
    config = backend.resolve(config, backend.platform_of(mesh))
    info = run_data.dataset_info(config)  # the dataset at the run's image size
    if teacher is not None:
        teacher_module, teacher_vars = given_model(teacher, info, "teacher")
    else:
        teacher_module, teacher_vars = load_teacher(config, info)
    if student is not None:
        student_module, student_vars = given_model(student, info, "student")
    else:
        student_vars = None
        student_module = models.create_model(
            config.student.arch,
            num_classes=info.num_classes,
            dtype=precision.compute_dtype(config.precision),
            **models.parse_kwargs(config.student.kwargs, "student.kwargs"),
        )
        models.check_fits(student_module, info, "student")
    synthesizer = build_synthesizer(config, info, teacher_module, student_module, mesh)
    sharding.check_batch_divides(config.synthesis.batch_size, mesh, "synthesis.batch_size")
    sharding.check_batch_divides(config.kd.batch_size, mesh, "kd.batch_size")
    sharding.check_batch_divides(config.pool.capacity, mesh, "pool.capacity")
    tx, schedule = kd_optimizer(config)
    return Components(
        config=config,
        backend_choices=choices,
        info=info,
        mesh=mesh,
        teacher=teacher_module,
        teacher_vars=sharding.replicate(teacher_vars, mesh),
        student=student_module,
        synthesizer=synthesizer,
        tx=tx,
        schedule=schedule,
        student_variables=student_vars,
    )


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's keys by name (`RUN_KEYS`), split from `seed`."""
    return dict(
        zip(RUN_KEYS, jax.random.split(jax.random.PRNGKey(seed), len(RUN_KEYS)), strict=True)
    )


def init_state(
    parts: Components, keys: dict[str, jax.Array], pool_images: jax.Array | None = None
) -> DFKDState:
    """The run's fresh state at epoch 0, placed on the mesh (`pool_images`: pre-filled pool)."""
    config = parts.config
    return create_dfkd_state(
        parts.synthesizer,
        parts.student,
        parts.tx,
        parts.teacher_vars,
        image_shape=parts.info.image_shape,
        pool_capacity=config.pool.capacity,
        pool_dtype=config.pool.dtype,
        pool_quantize=config.pool.quantize,
        student_rng=keys["student"],
        synthesizer_rng=keys["synthesizer_init"],
        mesh=parts.mesh,
        pool_images=pool_images,
        student_variables=parts.student_variables,
    )


def kd_step_options(parts: Components) -> dict[str, Any]:
    """The keywords of `distill.kd_step` for this run."""
    config = parts.config
    return dict(
        synthesizer=parts.synthesizer,
        student=parts.student,
        teacher=parts.teacher,
        tx=parts.tx,
        batch_size=config.kd.batch_size,
        temperature=config.kd.temperature,
        augment=make_synthesis_augment(config.kd.augment, parts.info.mean, parts.info.std),
        at_weight=config.kd.at_weight,
    )


def adv_array(value: float) -> jax.Array:
    """An adversarial weight as the float32 scalar the compiled synthesis call takes."""
    return jnp.asarray(value, jnp.float32)
