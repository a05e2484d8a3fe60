"""The benchmark's runs: the teacher, each method's distillation run, reuse of finished runs."""

import json
import os

import ml_collections
from absl import logging

from fastdfkd_jax import config_blocks, teacher, train
from fastdfkd_jax.benchmark.configs import comparable_config

SUMMARY = "summary.json"


def ensure_teacher(bench: ml_collections.ConfigDict, workdir: str) -> str:
    """The teacher checkpoint: the configured one, or one trained by `teacher.train_config`."""
    if bench.teacher.checkpoint:
        return bench.teacher.checkpoint
    if not bench.teacher.train_config:
        raise ValueError(
            "bench teacher.checkpoint is empty and no teacher.train_config is set: pass "
            "--config.teacher.checkpoint=DIR (a teacher directory)."
        )
    run_dir = os.path.join(workdir, "teacher_run")
    teacher_dir = os.path.join(run_dir, "teacher")
    if not os.path.exists(os.path.join(teacher_dir, "meta.json")):
        logging.info("No teacher given: training %s into %s.", bench.teacher.train_config, run_dir)
        teacher_config = config_blocks.load_config(bench.teacher.train_config)
        teacher_config.progress_bar = bench.progress_bar
        if bench.teacher.train_epochs:
            teacher_config.train.epochs = bench.teacher.train_epochs
        os.makedirs(run_dir, exist_ok=True)
        teacher.train_and_evaluate(teacher_config, run_dir)
    return teacher_dir


def run_method(config: ml_collections.ConfigDict, run_dir: str) -> dict:
    """`train.train_and_evaluate` in `run_dir`, or its summary if that run already finished.

    "Finished" means `run_dir/summary.json` exists and its config equals `config` up to
    `comparable_config` (so a standalone run of the same config, copied into `run_dir`, is reused).
    """
    path = os.path.join(run_dir, SUMMARY)
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
        same = comparable_config(summary.get("config", {})) == comparable_config(config.to_dict())
        if same:
            logging.info("Reusing the finished run in %s.", run_dir)
            return summary
    os.makedirs(run_dir, exist_ok=True)
    return train.train_and_evaluate(config, run_dir)


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
