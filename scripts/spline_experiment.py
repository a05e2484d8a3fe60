r"""MARS vs He vs Glorot initialization: ``spline.experiment.run`` behind absl flags.

python scripts/spline_experiment.py --config=configs/spline_diabetes.py --workdir=runs/x \
      [--config.train.epochs=50 ...]
"""

import os
import sys

# Configs import each other as `configs.*`; make the repository root importable when this file
# is run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from spline import experiment  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (plots, tables).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    experiment.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
