"""What decides a distillation run's result, as one hash: reuse and resume only the same run.

A run's fingerprint is the SHA-256 of
- its **settings**: the config flattened to dotted keys, without the keys that cannot change the
  result (`IGNORED_KEYS`: paths, where caches and checkpoints go, progress bars, image grids), with
  keys renamed by `RENAMED` (old dotted key -> today's), keys added later left out at the value
  that reproduces the older code (`ADDED`), so that a record stored before a config layout change
  still matches the same run today, and without the blocks of other synthesis methods (a
  DeepInversion setting cannot change a FastDFKD run); backend-dependent keys left at 'auto' count
  as the value they take on the run's backend (a standalone run and the benchmark's are one run),
  and a NumPy-file dataset (`npz:PATH`) by the digest of its content;
- the **teacher's parameters** (`teacher_digest`: their bytes, not the directory's path, so a record
  made in one clone matches in another and a teacher retrained at the same path does not);
- the **code's version** of what computes it (`code_versions`: the trainer's and the synthesis
  method's, bumped by a change that alters results);
- the **backend** (`cpu`, `gpu`, `tpu`): the same settings give other numbers on another kind of
  device (TF32 on GPUs), so a CPU record never stands for a GPU run.

`train.train_and_evaluate` writes `fingerprint.json` into its workdir and refuses to resume a
checkpoint of another fingerprint; the benchmark reuses a finished run or a stored record only when
the fingerprints agree (`fastdfkd_jax.benchmark.runs`).
"""

import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from fastdfkd_jax import backend as backends
from fastdfkd_jax import checkpoint, checks, reporting, synthesis
from fastdfkd_jax.data import npz

FILE = "fingerprint.json"

# Keys (dotted) that do not change what a run computes.
IGNORED_KEYS = (
    "teacher.checkpoint",  # where the teacher is: its parameters are digested instead
    "dataset.data_dir",
    "progress_bar",
    "compilation_cache",
    "compilation_cache_dir",
    "checkpoint.max_to_keep",
    "checkpoint.every_epochs",  # a resume replays the run exactly (tests/fastdfkd_jax/test_train)
    "sample_every_epochs",
    "sample_grid_size",
    "sample_upscale",
    "mars_head.enabled",  # an extra phase after distillation; its own outputs
    "start_afresh",  # what to do with a workdir of another run, not what this run computes
    "distributed.heartbeat_timeout_seconds",  # when a lost host is given up on
    "distributed.shutdown_timeout_seconds",
)
# Old dotted key -> today's, for every config key moved or renamed since records were first stored;
# or -> {synthesis method: today's key, OTHER_METHODS: the key for every other method} where the
# move depends on the run's method (a flat key moved into each method's own block).
OTHER_METHODS = "*"
# The flat `synthesis` keys that only FastDFKD read, now in its block `synthesis.fast`.
_FAST_ONLY = (
    "meta_lr",
    "meta_betas",
    "inner_optimizer",
    "inner_eps_root",
    "meta_gradient",
    "reptile_factor",
    "strategy",
    "remat",
    "reset_l0_epoch",
    "reset_layers",
    "reset_std",
    "reset_bn_scale_mean",
)


def _per_method(fast: str, deepinversion: str, cmi: str, generative: str) -> dict[str, str]:
    """A flat key's new home for each synthesis method (each a key in that method's block, or in
    the block of the method that read it, where the run's method did not).
    """
    return {
        "fast": fast,
        "fast_meta_latent": fast,
        "deepinversion": deepinversion,
        "cmi": cmi,
        "generative": generative,
        OTHER_METHODS: fast,
    }


RENAMED: dict[str, str | dict[str, str]] = {
    **{f"synthesis.{key}": f"synthesis.fast.{key}" for key in _FAST_ONLY},
    "synthesis.g_steps": _per_method(
        "synthesis.fast.g_steps",
        "synthesis.deepinversion.steps",
        "synthesis.cmi.steps",
        "synthesis.generative.g_steps",
    ),
    "synthesis.lr_g": _per_method(
        "synthesis.fast.lr_g",
        "synthesis.fast.lr_g",
        "synthesis.cmi.lr_g",
        "synthesis.generative.lr_g",
    ),
    "synthesis.lr_z": _per_method(
        "synthesis.fast.lr_z", "synthesis.fast.lr_z", "synthesis.cmi.lr_z", "synthesis.fast.lr_z"
    ),
    "synthesis.inner_betas": _per_method(
        "synthesis.fast.inner_betas",
        "synthesis.deepinversion.betas",
        "synthesis.cmi.betas",
        "synthesis.generative.betas",
    ),
    "synthesis.unroll": _per_method(
        "synthesis.fast.unroll",
        "synthesis.fast.unroll",
        "synthesis.fast.unroll",
        "synthesis.generative.unroll",
    ),
    "synthesis.chunk_steps": _per_method(
        "synthesis.deepinversion.chunk_steps",
        "synthesis.deepinversion.chunk_steps",
        "synthesis.cmi.chunk_steps",
        "synthesis.deepinversion.chunk_steps",
    ),
    "synthesis.lr_x": "synthesis.deepinversion.lr",
    "synthesis.student_bn": "synthesis.deepinversion.student_bn",
    "synthesis.return_iterate": "synthesis.deepinversion.return_iterate",
    **{
        f"synthesis.{key}": f"synthesis.generative.{key}"
        for key in ("adversary", "act", "balance", "kd_steps_per_round")
    },
}
# The key that names a run's synthesis method (method-dependent renames look it up).
METHOD_KEY = "synthesis.method"
# The dataset's name: a NumPy file counts by its content (`npz.content_name`).
DATASET_KEY = "dataset.name"
# Config keys added since records were first stored -> the value that computes what the code did
# before the key existed. A setting at that value is left out of the fingerprint, so a record of
# the older code still matches; any other value makes another run.
ADDED: dict[str, Any] = {"teacher.kwargs": "", "student.kwargs": ""}

# The trainer's version (KD step, epoch loop, evaluation): bump with a change that alters results.
TRAINER_VERSION = 1


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`config` (nested dicts) as {dotted key: leaf}; tuples become lists (JSON's view)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _canonical(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flat settings under today's names: `RENAMED` applied; `IGNORED_KEYS`, keys at their `ADDED`
    value and the keys of other methods' blocks (`synthesis.<block>.*` that the run's method does
    not read) dropped; sorted by key.
    """
    out = {}
    method = flat.get(METHOD_KEY)
    unread = tuple(
        f"synthesis.{block}."
        for block in synthesis.BLOCKS
        if method is not None and block not in synthesis.method_blocks(method)
    )
    for key, value in flat.items():
        renamed = RENAMED.get(key, key)
        if isinstance(renamed, dict):
            renamed = renamed.get(method, renamed[OTHER_METHODS])
        key = renamed
        if key in IGNORED_KEYS or (key in ADDED and ADDED[key] == value):
            continue
        if unread and key.startswith(unread):
            continue
        if key == DATASET_KEY and isinstance(value, str) and npz.is_npz_name(value):
            value = npz.content_name(value)  # a user's data file: by its content, not its path
        out[key] = value
    return dict(sorted(out.items()))


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config that decides the result, under today's names (`_canonical`)."""
    return _canonical(flatten(json.loads(json.dumps(dict(config), default=list))))


def in_todays_layout(config: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A run's stored config (summary.json's, of any layout since records were first stored) with
    today's key names (`RENAMED`), without the ignored keys and other methods' blocks: what
    readers of stored records use instead of the old names.
    """
    return _nested(settings(config))


def _nested(flat: Mapping[str, Any]) -> ml_collections.ConfigDict:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *path, name = key.split(".")
        holder = nested
        for part in path:
            holder = holder.setdefault(part, {})
        holder[name] = value
    return ml_collections.ConfigDict(nested)


def _autos_resolved(run_settings: dict[str, Any], platform: str) -> dict[str, Any]:
    """`run_settings` with each backend-dependent key given as text ('auto', or an explicit value
    from the command line: 'true', '10') replaced by the value it takes on `platform`
    (`backend.choices`): a run given 'auto', one given 'true' and one given the value it resolves
    to compute the same, so they have one fingerprint (the benchmark's runs hold resolved values).
    """
    if not any(
        isinstance(value, str) and key.rsplit(".", 1)[-1] in backends.KEYS
        for key, value in run_settings.items()
    ):
        return run_settings
    chosen = backends.choices(_nested(run_settings), platform)
    return {
        key: chosen[key] if isinstance(value, str) and key in chosen else value
        for key, value in run_settings.items()
    }


def resolved_settings(config: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """`settings(config)` with its 'auto' keys at the values they take on `backend`: what a run of
    `config` on that kind of device computes from (the fingerprint's settings).
    """
    return _autos_resolved(settings(config), backend)


def teacher_digest(variables: Any) -> str:
    """SHA-256 of the teacher's variables: every leaf's path, dtype, shape and bytes, in order.

    Leaves may be numpy arrays (a teacher directory's) or replicated JAX arrays (a run's, also
    across hosts: the local copy is read).
    """
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        if isinstance(leaf, jax.Array):
            leaf = leaf.addressable_data(0)
        array = np.ascontiguousarray(np.asarray(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def code_versions(method_version: int) -> dict[str, int]:
    """The versions of the code that computes a run: the trainer's and its synthesis method's."""
    return {"trainer": TRAINER_VERSION, "method": method_version}


def fingerprint(
    run_settings: Mapping[str, Any], teacher: str, code: Mapping[str, int], backend: str
) -> str:
    """SHA-256 of (settings, teacher digest, code versions, backend) as canonical JSON."""
    payload = {
        "settings": dict(run_settings),
        "teacher": teacher,
        "code": dict(code),
        "backend": backend,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def record(
    config: Mapping[str, Any], teacher: str, code: Mapping[str, int], backend: str
) -> dict[str, Any]:
    """`fingerprint.json`'s content: the fingerprint and what it was computed from."""
    run_settings = resolved_settings(config, backend)
    return dict(
        fingerprint=fingerprint(run_settings, teacher, code, backend),
        teacher_digest=teacher,
        code_versions=dict(code),
        backend=backend,
        settings=run_settings,
    )


def of_record(stored: Mapping[str, Any]) -> str:
    """The fingerprint of a stored record (`record`'s dict, or a summary.json holding one under
    'fingerprint_record'), recomputed with today's `RENAMED` and `IGNORED_KEYS`.
    """
    stored = stored.get("fingerprint_record", stored)
    run_settings = _autos_resolved(_canonical(stored["settings"]), stored["backend"])
    return fingerprint(
        run_settings, stored["teacher_digest"], stored["code_versions"], stored["backend"]
    )


def read(workdir: str) -> dict[str, Any] | None:
    """The workdir's `fingerprint.json`, or None."""
    path = os.path.join(workdir, FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write(workdir: str, content: Mapping[str, Any]) -> None:
    with open(os.path.join(workdir, FILE), "w") as f:
        json.dump(dict(content), f, indent=1, sort_keys=True)


# What a run writes into its workdir, moved aside together when another run starts afresh there.
RUN_FILES = (
    FILE,
    checkpoint.CHECKPOINTS,
    checkpoint.WITHIN_EPOCH_CHECKPOINTS,
    "metrics.jsonl",
    "summary.json",
    "tensorboard",
)
RUN_FILE_PATTERNS = ("samples_*.png",)


def check_writable(workdir: str) -> None:
    """Raises a UserInputError naming `workdir` when a file cannot be created in it."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise checks.UserInputError(
            f"The workdir {workdir!r} cannot be written ({error.strerror}): choose another."
        ) from None


def move_run_aside(workdir: str) -> str:
    """Moves the files of the run in `workdir` into `workdir/superseded.<n>/`; returns that path."""
    n = 1
    while os.path.exists(os.path.join(workdir, f"superseded.{n}")):
        n += 1
    target = os.path.join(workdir, f"superseded.{n}")
    os.makedirs(target)
    names = [name for name in RUN_FILES if os.path.exists(os.path.join(workdir, name))]
    for pattern in RUN_FILE_PATTERNS:
        names += [os.path.basename(p) for p in glob.glob(os.path.join(workdir, pattern))]
    for name in names:
        os.rename(os.path.join(workdir, name), os.path.join(target, name))
    return target


def claim_workdir(workdir: str, run_fingerprint: dict, start_afresh: bool = False) -> None:
    """Records `run_fingerprint` in `workdir` after checking that the workdir can be written.

    A workdir holding a run of another fingerprint (another config, teacher, code version or
    backend) is refused with a UserInputError naming what differs, since its checkpoints must never
    be resumed as this run; with `start_afresh`, that run's files are moved to
    `workdir/superseded.<n>/` and this run starts there from the beginning. A workdir with
    checkpoints from before fingerprints were recorded is adopted with a warning.
    """
    check_writable(workdir)
    stored = read(workdir)
    if stored is not None and of_record(stored) != run_fingerprint["fingerprint"]:
        if start_afresh:
            if reporting.is_primary():
                logging.warning(
                    "The workdir %s held another run: moved to %s.",
                    workdir,
                    move_run_aside(workdir),
                )
        else:
            differ = sorted(
                k
                for k in set(stored["settings"]) | set(run_fingerprint["settings"])
                if stored["settings"].get(k) != run_fingerprint["settings"].get(k)
            )
            for key in ("teacher_digest", "code_versions", "backend"):
                if stored.get(key) != run_fingerprint[key]:
                    differ.append(key)
            raise checks.UserInputError(
                f"The workdir {workdir!r} holds another run (its {FILE} differs in "
                f"{', '.join(differ[:8])}{' ...' if len(differ) > 8 else ''}): use a new workdir, "
                "or --config.start_afresh=True to move that run aside and start this one there."
            )
    elif stored is not None:
        return
    elif checkpoint.has_checkpoints(workdir):
        logging.warning(
            "The workdir %s has checkpoints but no %s (written before runs recorded their "
            "fingerprint): resuming them as this run.",
            workdir,
            FILE,
        )
    if reporting.is_primary():
        write(workdir, run_fingerprint)
