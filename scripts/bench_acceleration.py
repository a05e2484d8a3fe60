r"""The acceleration benchmark: DeepInv-2k against Fast-2/5/10, side by side, one command.

  python scripts/bench_acceleration.py --config=configs/bench_digits.py --workdir=runs/bench_digits
  python scripts/bench_acceleration.py --config=configs/bench_digits.py --quick \
      --workdir=runs/bench_digits_quick

Writes WORKDIR/acceleration.json, acceleration.md and acceleration.png (and each method's run in
WORKDIR/<method>/, resumable). `--quick` selects the config file's 'quick' preset (the same as
`--config=configs/bench_digits.py:quick`); `--config.x=...` overrides any key on top of it. See
fastdfkd_jax/bench.py and docs/benchmarks.md.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

# `configs` is a top-level package of the repository, next to this scripts/ folder.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/bench_*.py file (':preset' optional).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_QUICK = flags.DEFINE_bool("quick", False, "Use the config file's 'quick' preset.")


def select_quick(argv: list[str]) -> list[str]:
    """`--config=FILE` -> `--config=FILE:quick` when `--quick` is given.

    The config file is read while flags are parsed, so the preset must be chosen before that.
    """
    if "--quick" not in argv:
        return argv
    out = []
    for arg in argv:
        if arg.startswith("--config=") and ":" not in arg:
            arg += ":quick"
        elif arg.startswith("--config=") and not arg.endswith(":quick"):
            raise app.UsageError(f"--quick conflicts with the preset in {arg}.")
        out.append(arg)
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from fastdfkd_jax import bench, sharding  # noqa: PLC0415 (JAX starts after flag parsing)

    config = _CONFIG.value
    sharding.initialize_distributed(bench.method_config(config, config.methods[0]).distributed)
    result = bench.run_benchmark(config, _WORKDIR.value)
    logging.info("Benchmark done in %.0f s: %s", result["benchmark_seconds"], _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, argv=select_quick(sys.argv))
