r"""The acceleration benchmark: the paper's methods side by side, one command.

  python scripts/bench_acceleration.py --config=configs/bench_digits.py --workdir=runs/bench_digits
  python scripts/bench_acceleration.py --config=configs/bench_digits.py --quick \
      --workdir=runs/bench_digits_quick

The same as `fastdfkd --config=configs/bench_digits.py[:quick] --workdir=...` (the `benchmark`
job). Writes WORKDIR/acceleration.json, acceleration.md and acceleration.png (and each method's run
in WORKDIR/<method>/, resumable). `--quick` adds the config file's `quick` variant (the same as
`--config=configs/bench_digits.py:quick`); `--config.x=...` overrides any key on top of it. See
fastdfkd_jax/benchmark/ and docs/benchmarks.md.
"""

import sys

from absl import app, flags

from fastdfkd_jax import main as main_lib

_QUICK = flags.DEFINE_bool("quick", False, "Use the config file's 'quick' variant.")


def select_quick(argv: list[str]) -> list[str]:
    """`--config=FILE[:ARG]` -> `--config=FILE:ARG,quick` when `--quick` is given.

    The config file is read while flags are parsed, so the variant must be chosen before that.
    """
    if "--quick" not in argv:
        return argv
    out = []
    for arg in argv:
        if arg.startswith("--config="):
            arg += ",quick" if ":" in arg else ":quick"
        out.append(arg)
    return out


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main_lib.main, argv=select_quick(sys.argv))
