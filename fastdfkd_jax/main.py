"""Entry point: `python -m fastdfkd_jax.main --config=configs/<name>.py --workdir=DIR`.

The config file's `job` names what runs ('teacher' or 'dfkd'); `--config.x.y=value` overrides any
declared key (type-checked; unknown keys are refused).
"""

import importlib
import os

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from fastdfkd_jax import sharding

# job name -> "module:function" taking (config, workdir) and returning the summary dict.
JOBS = {
    "teacher": "fastdfkd_jax.teacher:train_and_evaluate",
    "dfkd": "fastdfkd_jax.loop:train_and_evaluate",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs.")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `config.job` in `workdir` and returns its summary."""
    if config.job not in JOBS:
        raise ValueError(f"Unknown job {config.job!r}; choose one of {sorted(JOBS)}.")
    # Before anything touches a device: jax.distributed must start before the backend does.
    sharding.initialize_distributed(config.distributed)
    logging.info("JAX devices: %s", jax.devices())
    os.makedirs(workdir, exist_ok=True)
    module_name, function_name = JOBS[config.job].split(":")
    job = getattr(importlib.import_module(module_name), function_name)
    return job(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    summary = run(_CONFIG.value, _WORKDIR.value)
    logging.info("Summary: %s", {k: v for k, v in summary.items() if k != "config"})


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
