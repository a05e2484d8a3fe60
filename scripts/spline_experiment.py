r"""The spline-initialization study of one data set: ``spline.study.run`` behind absl flags.

  python scripts/spline_experiment.py --config=configs/spline_friedman1.py:quick \
      --workdir=runs/spline_friedman1_quick [--config.train.epochs=50 ...]

Rerunning the same command on the same workdir resumes a killed study.
"""

from absl import app, flags
from ml_collections import config_flags

from spline import study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (units, tables, plot).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    study.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
