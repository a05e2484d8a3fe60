"""Checkpoints: resumable run state (orbax CheckpointManager) and teacher directories.

A run's state is one `flax.struct` pytree saved under `WORKDIR/checkpoints/<step>`, asynchronously
(`save` returns when the arrays are off the device; `wait` blocks until the files are complete);
orbax writes to a temporary directory and renames it when complete, so a run killed during a save
keeps its previous checkpoint. Restoring takes an abstract target (shapes, dtypes, shardings) so
the state comes back with its exact structure and placement.

A teacher directory holds `meta.json` (`arch`, `num_classes`, `dataset`, `image_shape`) and
`variables/` (`{'params', 'batch_stats'}`); teacher training and the PyTorch import both write it.
"""

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from fastdfkd_jax import checks

TEACHER_META = "meta.json"
# A run's checkpoints at epoch boundaries (step: the epochs done), and those saved inside an
# epoch on a preemption notice (step: a count of units, `epoch.within_epoch_step`).
CHECKPOINTS = "checkpoints"
WITHIN_EPOCH_CHECKPOINTS = "checkpoints_within_epoch"
TEACHER_VARIABLES = "variables"


def make_manager(
    workdir: str, max_to_keep: int, folder: str = CHECKPOINTS
) -> ocp.CheckpointManager:
    """A manager for `workdir/<folder>` (orbax needs an absolute path)."""
    directory = epath.Path(os.path.abspath(workdir)) / folder
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def has_checkpoints(workdir: str) -> bool:
    """Whether `workdir/checkpoints` holds a checkpoint (without opening a manager)."""
    directory = os.path.join(workdir, "checkpoints")
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def save(
    manager: ocp.CheckpointManager, step: int, state: Any, metadata: dict | None = None
) -> None:
    """Starts saving `state` as checkpoint `step` and returns once the arrays are copied off the
    device; orbax writes the files in the background (`wait` blocks until they are complete).

    The state's device buffers may be reused (donated) by the next step as soon as this returns.
    A new save first waits for the previous one. `metadata` (JSON) is saved with it.
    """
    # force: saved whatever orbax's `should_save` says (it would skip a step not above the
    # latest, silently, and ask the multi-host preemption sync point with this step number).
    manager.save(step, args=ocp.args.StandardSave(state), custom_metadata=metadata, force=True)


def metadata_of(manager: ocp.CheckpointManager, step: int) -> dict:
    """The `metadata` saved with checkpoint `step` ({} when none)."""
    return dict(manager.metadata(step).custom_metadata or {})


def wait(manager: ocp.CheckpointManager) -> None:
    """Blocks until every checkpoint started with `save` is on disk."""
    manager.wait_until_finished()


def restore_latest(
    manager: ocp.CheckpointManager, target: Any, *, steps: Sequence[int] | None = None
) -> tuple[Any, int | None]:
    """Restores the latest good checkpoint into the structure and shardings of `target`.

    A checkpoint that cannot be read (a truncated or missing file, as a full disk leaves it) is
    skipped with a warning naming its step, and the one before it is tried; when none can be read,
    a UserInputError names the directory before the first epoch. `steps`: the candidates (default:
    all of the manager's).

    Returns `(state, step)`, or `(target, None)` when there is no checkpoint yet.
    """
    steps = sorted(manager.all_steps() if steps is None else steps, reverse=True)
    if not steps:
        return target, None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    for step in steps:
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step
        except Exception as error:  # noqa: BLE001 (orbax raises many kinds for a broken file)
            logging.warning(
                "Checkpoint %d in %s cannot be read (%s: %s); trying the one before it.",
                step,
                manager.directory,
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
            )
    raise checks.UserInputError(
        f"No checkpoint in {manager.directory} can be read (steps {steps}): delete the directory "
        "to start the run over."
    )


def save_teacher(
    directory: str,
    variables: dict,
    *,
    arch: str,
    num_classes: int,
    dataset: str,
    image_shape: Sequence[int],
    kwargs: dict | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> None:
    """Writes a teacher directory: `meta.json` and the variables.

    `meta.json` says what the variables are for: `arch` (a zoo name or an import path) and its
    constructor's `kwargs`, `num_classes`, the `dataset` and `image_shape` it was trained or
    distilled on and, when given, the normalization its inputs take (`mean`, `std`: [C]).

    In a multi-process run every process must call it (orbax synchronizes them); only process 0
    writes.
    """
    path = epath.Path(os.path.abspath(directory))
    path.mkdir(parents=True, exist_ok=True)
    variables = {k: variables[k] for k in ("params", "batch_stats") if k in variables}
    target = path / TEACHER_VARIABLES
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target, jax.device_get(variables), force=True)
    meta = dict(
        arch=arch, num_classes=int(num_classes), dataset=dataset, image_shape=list(image_shape)
    )
    if kwargs:
        meta["kwargs"] = dict(kwargs)
    if mean is not None and std is not None:
        meta.update(mean=[float(m) for m in mean], std=[float(s) for s in std])
    if jax.process_index() == 0:
        (path / TEACHER_META).write_text(json.dumps(meta, indent=2))


def load_teacher_meta(directory: str) -> dict:
    """Reads a teacher directory's `meta.json`, with a clear error when it is missing."""
    path = epath.Path(os.path.abspath(directory)) / TEACHER_META
    if not path.exists():
        raise checks.UserInputError(
            f"No teacher at {directory!r}: {path} is missing. Train one with "
            "`python -m fastdfkd_jax.main --config=configs/teacher_<dataset>.py --workdir=DIR` "
            "(the teacher is written to DIR/teacher) or import a PyTorch one with "
            "scripts/import_torch_teacher.py."
        )
    return json.loads(path.read_text())


def load_teacher(
    directory: str, *, arch: str | None = None, num_classes: int | None = None
) -> tuple[dict, dict]:
    """Reads a teacher directory; checks its architecture and class count when given.

    Returns:
      `(meta, variables)`, variables as `{'params': ..., 'batch_stats': ...}` of numpy arrays.

    """
    meta = load_teacher_meta(directory)
    if arch is not None and meta["arch"] != arch:
        raise ValueError(
            f"Teacher at {directory!r} is a {meta['arch']!r}, but the config asks for {arch!r}."
        )
    if num_classes is not None and meta["num_classes"] != num_classes:
        raise ValueError(
            f"Teacher at {directory!r} has {meta['num_classes']} classes, but the config's "
            f"dataset has {num_classes}."
        )
    path = epath.Path(os.path.abspath(directory)) / TEACHER_VARIABLES
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(path)
    return meta, variables
