r"""The benchmark's tables from the records stored in the repository, into the docs.

  python scripts/bench_report.py                 # rewrite every generated table of the docs
      # (and its figure, docs/figures/records_<bench>_<backend>.png)
  python scripts/bench_report.py --check         # exit 1 when a docs table differs from its records
  python scripts/bench_report.py --results=results/bench_digits/cpu --out=DIR
      # that folder's table as DIR/records.md, records.json and records.png

A generated table sits in docs/*.md between `<!-- records:PATH -->` and `<!-- /records -->`, PATH a
results folder relative to the repository root (fastdfkd_jax/benchmark/records.py), or between
`<!-- runs:F1,F2,... -->` and `<!-- /runs -->`: run folders side by side, an experiment's variants
beside the benchmark's records (fastdfkd_jax/benchmark/side_by_side.py).
"""

import glob
import json
import os
import sys

from absl import app, flags

from fastdfkd_jax import config_args, methods
from fastdfkd_jax.benchmark import configs as bench_configs
from fastdfkd_jax.benchmark import records, report, side_by_side

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHECK = flags.DEFINE_bool("check", False, "Only compare the docs' tables with their records.")
_RESULTS = flags.DEFINE_string("results", "", "One results folder (relative to the repository).")
_OUT = flags.DEFINE_string("out", "", "With --results: where to write records.md/.json/.png.")


# The schedule the generative baselines' time is projected to: CIFAR's (their original scripts').
PROJECTION_CONFIG = os.path.join(REPO, "configs", "dfkd_cifar.py:cifar10,{method}")


def cifar_schedules(methods_present) -> dict[str, tuple[int, int]]:
    """Method -> (synthesis calls per epoch, epochs) on CIFAR (configs/dfkd_cifar.py)."""
    out = {}
    for method in methods_present:
        config = config_args.load_config(PROJECTION_CONFIG.format(method=method))
        out[method] = (bench_configs.calls_per_epoch(config), config.epochs)
    return out


def table(path: str) -> str:
    """The markdown table of the results folder `path` (relative to the repository root), with
    the projection of its per-call times to CIFAR's schedule.
    """
    cwd = os.getcwd()
    os.chdir(REPO)  # the records' folder is named as written in the docs: relative
    try:
        result = records.result_from_records(path)
        present = [r["method"] for r in result["rows"]]
        projected = [m for m in ("fast5", *methods.GENERATIVE_BASELINES) if m in present]
        projections = records.projection_lines(result, cifar_schedules(projected), "CIFAR")
        return records.markdown(result, projections)
    finally:
        os.chdir(cwd)


def figure_path(path: str) -> str:
    """docs/figures/records_<folder names>.png of the results folder `path` (relative)."""
    name = "_".join(os.path.normpath(path).split(os.sep)[1:])  # results/bench_digits/cpu -> ...
    return os.path.join(REPO, "docs", "figures", f"records_{name}.png")


def write_figure(path: str) -> None:
    """The accuracy-against-synthesis-time plot of the results folder `path`."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        result = records.result_from_records(path)
        if result["rows"]:
            report.plot(result, figure_path(path))
    finally:
        os.chdir(cwd)


def runs_table(marked: str) -> str:
    """The side-by-side table of a `runs` marker's folders (relative to the repository root)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return side_by_side.markdown(side_by_side.result(side_by_side.folders_of(marked)))
    finally:
        os.chdir(cwd)


# Each kind of generated block -> the function that makes its table from the path it names.
GENERATORS = {records.RECORDS: table, side_by_side.RUNS: runs_table}


def stale_docs() -> list[str]:
    """'page: PATH' for every generated table that differs from what its records give now."""
    stale = []
    for page in sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))):
        text = open(page).read()
        for kind, generate in GENERATORS.items():
            for path in records.marked_paths(text, kind):
                if records.docs_section(text, path, kind) != generate(path):
                    stale.append(f"{os.path.relpath(page, REPO)}: {path}")
    return stale


def main(argv):
    del argv
    if _RESULTS.value:
        os.chdir(REPO)
        result = records.result_from_records(_RESULTS.value)
        os.makedirs(_OUT.value or ".", exist_ok=True)
        out = _OUT.value or "."
        with open(os.path.join(out, "records.md"), "w") as f:
            f.write(records.markdown(result))
        with open(os.path.join(out, "records.json"), "w") as f:
            json.dump(result, f, indent=1, default=float)
        report.plot(result, os.path.join(out, "records.png"))
        return
    if _CHECK.value:
        stale = stale_docs()
        for line in stale:
            sys.stderr.write(f"stale table: {line} (run scripts/bench_report.py)\n")
        sys.exit(1 if stale else 0)
    for page in sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))):
        text = open(page).read()
        new = text
        for path in records.marked_paths(text):
            new = records.replace_docs_section(new, path, table(path))
            write_figure(path)
        for path in records.marked_paths(text, side_by_side.RUNS):
            new = records.replace_docs_section(new, path, runs_table(path), side_by_side.RUNS)
        if new != text:
            with open(page, "w") as f:
                f.write(new)
            sys.stdout.write(f"Wrote {os.path.relpath(page, REPO)}\n")


if __name__ == "__main__":
    app.run(main)
