"""The jobs a config file can name and the one function that runs any of them.

`run(config, workdir)` validates `config` for `config.job` (`JOBS`: 'teacher', 'dfkd',
'benchmark', 'mars_head'), starts `jax.distributed` where the config or the environment asks for
it, runs the job, then the jobs of `FOLLOW_UPS` whose config block says `enabled`. The command
line (`fastdfkd_jax.main`) and the Python API (`fastdfkd_jax.api`) both call it; this module
defines no command-line flag, so a library that imports it defines none either.
"""

import importlib
import os

import jax
import ml_collections
from absl import logging

from fastdfkd_jax import checks, sharding

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


def run(config: ml_collections.ConfigDict, workdir: str, **job_options) -> dict:
    """Validates `config` for `config.job`, runs it in `workdir` and returns its summary.

    `job_options` go to the job's function (the Python API's given models, `fastdfkd_jax.api`).
    """
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
    summary = getattr(module, function_name)(config, workdir, **job_options)
    for name in after:
        follow_module, follow_function = JOBS[name]
        summary[name] = getattr(importlib.import_module(follow_module), follow_function)(
            config, workdir
        )
    return summary
