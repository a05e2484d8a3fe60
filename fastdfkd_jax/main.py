"""Entry point: `fastdfkd --config=configs/<file>.py[:ARG] --workdir=DIR` (or
`python -m fastdfkd_jax.main ...`); `fastdfkd --list_methods` lists the named methods.

The config file's `job` names what runs (`JOBS`: 'teacher', 'dfkd', 'benchmark', 'mars_head');
the job's `validate(config)` runs first, then the job, then the jobs of `FOLLOW_UPS` whose config
block says `enabled` (validated before the job starts). `--config.x.y=value` overrides any
declared key (type-checked; unknown keys are refused). Config files are loaded by path; their
argument syntax is in `fastdfkd_jax.config_args`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fastdfkd_jax import checks, methods, preemption
from fastdfkd_jax.jobs import JOBS, run  # noqa: F401 -- `main.run`, `main.JOBS` for callers

# The exit status of a user's mistake (a refused setting, a missing teacher or data set); a
# preempted run exits with `preemption.PREEMPTED_STATUS` (75: rerun the command to resume).
USER_ERROR_STATUS = 2

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs.")
_LIST_METHODS = flags.DEFINE_bool(
    "list_methods", False, "Print the named methods, one line each, and exit (no config needed)."
)


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
