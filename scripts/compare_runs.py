r"""Whether two distillation runs computed the same thing, bit for bit.

  python scripts/compare_runs.py RUN_DIR_A RUN_DIR_B

Compares the final checkpoints (every leaf of the state, exactly) and `metrics.jsonl` (every value
but the wall-clock seconds). Exits 0 when both agree, 1 otherwise, naming what differs. Used to
check that a refactor changes no result: the same config run before and after it.
"""

import json
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app
from etils import epath


def final_state(run_dir: str):
    """(step, state as nested dicts of arrays) of the run's last checkpoint."""
    manager = ocp.CheckpointManager(epath.Path(os.path.abspath(run_dir)) / "checkpoints")
    step = manager.latest_step()
    state = manager.restore(step, args=ocp.args.StandardRestore())
    manager.close()
    return step, state


def metrics_without_times(run_dir: str) -> list[dict]:
    """metrics.jsonl's records without the keys that measure time (`*_seconds`)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def differences(a: str, b: str) -> list[str]:
    out = []
    step_a, state_a = final_state(a)
    step_b, state_b = final_state(b)
    if step_a != step_b:
        out.append(f"final checkpoint steps {step_a} != {step_b}")
    leaves_a = jax.tree_util.tree_flatten_with_path(state_a)[0]
    leaves_b = dict(jax.tree_util.tree_flatten_with_path(state_b)[0])
    if len(leaves_a) != len(leaves_b):
        out.append(f"{len(leaves_a)} state leaves against {len(leaves_b)}")
    for path, leaf in leaves_a:
        other = leaves_b.get(path)
        if other is None or not np.array_equal(np.asarray(leaf), np.asarray(other)):
            out.append(f"state leaf {jax.tree_util.keystr(path)} differs")
    rows_a, rows_b = metrics_without_times(a), metrics_without_times(b)
    if rows_a != rows_b:
        out.append(f"metrics.jsonl differs ({len(rows_a)} against {len(rows_b)} records)")
    return out


def main(argv):
    if len(argv) != 3:
        raise app.UsageError("usage: compare_runs.py RUN_DIR_A RUN_DIR_B")
    found = differences(argv[1], argv[2])
    for line in found:
        sys.stderr.write(line + "\n")
    sys.stdout.write(("DIFFERENT" if found else "IDENTICAL") + f": {argv[1]} {argv[2]}\n")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    app.run(main)
