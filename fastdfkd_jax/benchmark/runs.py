"""The benchmark's runs: the teacher, each method's distillation runs (one per seed), reuse.

A method's run for one seed is reused, never re-run, when a run of the same fingerprint
(`fastdfkd_jax.fingerprint`: the settings that decide the result, the teacher's parameters, the
code's version, the backend) has finished: a stored record in the results folder (`results_dir`,
kept in the repository: `summary.json` and `metrics.jsonl` per method and seed), or a finished run
in the workdir. A workdir run of another fingerprint is moved aside (`<dir>.superseded.<n>`) and
the method runs afresh: its checkpoints are never resumed as the new run.
"""

import json
import os
import shutil
import statistics

import ml_collections
from absl import logging

from fastdfkd_jax import (
    backend,
    checkpoint,
    checks,
    config_args,
    fingerprint,
    synthesis,
    teacher,
    train,
)

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
# The files of a run that a stored record keeps (no checkpoints, no images).
RECORD_FILES = (SUMMARY, METRICS)


def ensure_teacher(bench: ml_collections.ConfigDict, workdir: str) -> str:
    """The teacher checkpoint: the configured one, or one trained by `teacher.train_config`."""
    if bench.teacher.checkpoint:
        return bench.teacher.checkpoint
    if not bench.teacher.train_config:
        raise checks.UserInputError(
            "bench teacher.checkpoint is empty and no teacher.train_config is set: pass "
            "--config.teacher.checkpoint=DIR (a teacher directory)."
        )
    run_dir = os.path.join(workdir, "teacher_run")
    teacher_dir = os.path.join(run_dir, "teacher")
    if not os.path.exists(os.path.join(teacher_dir, "meta.json")):
        logging.info("No teacher given: training %s into %s.", bench.teacher.train_config, run_dir)
        teacher_config = config_args.load_config(bench.teacher.train_config)
        teacher_config.progress_bar = bench.progress_bar
        if bench.teacher.train_epochs:
            teacher_config.train.epochs = bench.teacher.train_epochs
        os.makedirs(run_dir, exist_ok=True)
        teacher.train_and_evaluate(teacher_config, run_dir)
    return teacher_dir


def teacher_digest(teacher_dir: str) -> str:
    """`fingerprint.teacher_digest` of the teacher directory's variables."""
    meta = checkpoint.load_teacher_meta(teacher_dir)
    _, variables = checkpoint.load_teacher(
        teacher_dir, arch=meta["arch"], num_classes=meta["num_classes"]
    )
    return fingerprint.teacher_digest(variables)


def expected_fingerprint(config: ml_collections.ConfigDict, digest: str) -> str:
    """The fingerprint `train.train_and_evaluate` will record for `config` on this backend."""
    return fingerprint.record(
        config.to_dict(),
        digest,
        fingerprint.code_versions(synthesis.code_version(config.synthesis)),
        backend.platform_of(),
    )["fingerprint"]


def run_dir_of(workdir: str, method: str, seed: int) -> str:
    return os.path.join(workdir, method, f"seed{seed}")


def _read_summary(directory: str) -> dict | None:
    path = os.path.join(directory, SUMMARY)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _matches(summary: dict | None, expected: str) -> bool:
    return (
        summary is not None
        and "fingerprint_record" in summary
        and fingerprint.of_record(summary) == expected
    )


def _move_aside(run_dir: str) -> None:
    """Renames a run directory of another fingerprint to `<run_dir>.superseded.<n>`."""
    n = 1
    while os.path.exists(f"{run_dir}.superseded.{n}"):
        n += 1
    logging.warning(
        "%s holds a run of another fingerprint (another config, teacher or code version): "
        "moved to %s.superseded.%d.",
        run_dir,
        run_dir,
        n,
    )
    os.rename(run_dir, f"{run_dir}.superseded.{n}")


def store_record(run_dir: str, record_dir: str) -> None:
    """Copies the run's record files (summary and metrics, no checkpoints) into `record_dir`."""
    os.makedirs(record_dir, exist_ok=True)
    for name in RECORD_FILES:
        shutil.copyfile(os.path.join(run_dir, name), os.path.join(record_dir, name))


def run_method(
    config: ml_collections.ConfigDict, run_dir: str, digest: str, record_dir: str = ""
) -> dict:
    """The summary of `config`'s run: a stored record in `record_dir` or a finished run in
    `run_dir` of the same fingerprint, else a new (or resumed) run in `run_dir`, then stored.

    Args:
      config: the run's distillation config (its teacher the one `digest` was computed from).
      run_dir: the run's work directory.
      digest: `teacher_digest` of the teacher.
      record_dir: where the record of this method and seed is kept ('' keeps none).
    """
    expected = expected_fingerprint(config, digest)
    if record_dir:
        stored = _read_summary(record_dir)
        if _matches(stored, expected):
            logging.info("Reusing the stored record in %s.", record_dir)
            return stored
    finished = _read_summary(run_dir)
    if _matches(finished, expected):
        logging.info("Reusing the finished run in %s.", run_dir)
    else:
        recorded = fingerprint.read(run_dir)
        stale = recorded is not None and fingerprint.of_record(recorded) != expected
        legacy = recorded is None and (finished is not None or checkpoint.has_checkpoints(run_dir))
        if stale or legacy:
            _move_aside(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        finished = train.train_and_evaluate(config, run_dir)
    if record_dir:
        store_record(run_dir, record_dir)
    return finished


def aggregate(summaries: list[dict]) -> dict:
    """One summary of a method's runs over seeds: the first seed's keys, with the accuracies and
    times replaced by their means over seeds, and their per-seed values and min / max added.
    """
    out = dict(summaries[0])
    out["seeds"] = [s["config"]["seed"] for s in summaries]
    for key in (
        "student_test_accuracy",
        "student_best_test_accuracy",
        "synthesis_seconds",
        "total_seconds",
        "synthesis_compile_seconds",
    ):
        values = [s.get(key) for s in summaries]
        if any(v is None for v in values):
            continue
        out[key] = statistics.fmean(values)
        out[f"{key}_per_seed"] = values
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    return out


def timing_only_summary(meta_gradient: str) -> dict:
    """The summary keys the table reads, for a method that was only timed, not run."""
    return dict(
        meta_gradient=meta_gradient,
        student_test_accuracy=None,
        teacher_test_accuracy=None,
        synthesis_seconds=None,
        synthesis_calls=0,
        total_seconds=None,
        synthesis_compile_seconds=None,
    )
