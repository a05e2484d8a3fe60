"""Entry point: `fastdfkd --config=configs/<file>.py[:ARG] --workdir=DIR` (or
`python -m fastdfkd_jax.main ...`); `fastdfkd --list_methods` lists the named methods.

The config file's `job` names what runs (`JOBS`: 'teacher', 'dfkd', 'benchmark', 'mars_head');
the job's `validate(config)` runs first, then the job, then the jobs of `FOLLOW_UPS` whose config
block says `enabled` (validated before the job starts). `--config.x.y=value` overrides any
declared key (type-checked; unknown keys are refused). Config files are loaded by path; their
argument syntax is in `fastdfkd_jax.config_args`.
"""

import importlib
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from fastdfkd_jax import checks, methods, preemption, sharding

# job name -> (module with `validate(config)`, its function `(config, workdir) -> summary dict`).
# Imported when the job runs, so one job does not pay for the others' imports.
JOBS = {
    "teacher": ("fastdfkd_jax.teacher", "train_and_evaluate"),
    "dfkd": ("fastdfkd_jax.train", "train_and_evaluate"),
    "benchmark": ("fastdfkd_jax.benchmark", "run_benchmark"),
    # On a finished dfkd run's workdir (its dfkd config with --config.job=mars_head).
    "mars_head": ("fastdfkd_jax.mars_head", "run"),
}
# job -> jobs run after it on the same workdir when the config's block of their name has
# `enabled=True` (off by default); each one's summary joins the job's under its name.
FOLLOW_UPS = {"dfkd": ("mars_head",)}

# The exit status of a user's mistake (a refused setting, a missing teacher or data set); a
# preempted run exits with `preemption.PREEMPTED_STATUS` (75: rerun the command to resume).
USER_ERROR_STATUS = 2

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs.")
_LIST_METHODS = flags.DEFINE_bool(
    "list_methods", False, "Print the named methods, one line each, and exit (no config needed)."
)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Validates `config` for `config.job`, runs it in `workdir` and returns its summary."""
    if config.job not in JOBS:
        raise ValueError(f"Unknown job {config.job!r}; choose one of {sorted(JOBS)}.")
    module_name, function_name = JOBS[config.job]
    module = importlib.import_module(module_name)
    after = [n for n in FOLLOW_UPS.get(config.job, ()) if n in config and config[n].enabled]
    try:  # a refused setting is the user's mistake: one line, no traceback (`main`)
        module.validate(config)
        for name in after:
            importlib.import_module(JOBS[name][0]).validate(config)
    except checks.UserInputError:
        raise
    except ValueError as error:
        raise checks.UserInputError(str(error)) from error
    # Before anything touches a device: jax.distributed must start before the backend does.
    sharding.initialize_distributed(config.get("distributed") or sharding.distributed_config())
    logging.info("JAX devices: %s", jax.devices())
    os.makedirs(workdir, exist_ok=True)
    summary = getattr(module, function_name)(config, workdir)
    for name in after:
        follow_module, follow_function = JOBS[name]
        summary[name] = getattr(importlib.import_module(follow_module), follow_function)(
            config, workdir
        )
    return summary


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _LIST_METHODS.value:
        sys.stdout.write(methods.listing() + "\n")
        return
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required (or --list_methods).")
    try:
        summary = run(_CONFIG.value, _WORKDIR.value)
    except checks.UserInputError as error:
        sys.stderr.write(f"fastdfkd: error: {error}\n")
        sys.exit(USER_ERROR_STATUS)
    except preemption.Preempted as notice:
        sys.stderr.write(f"fastdfkd: {notice}\n")
        sys.exit(preemption.PREEMPTED_STATUS)
    logging.info("Summary: %s", {k: v for k, v in summary.items() if k != "config"})


def cli() -> None:
    """The `fastdfkd` console command."""
    app.run(main)


if __name__ == "__main__":
    cli()
