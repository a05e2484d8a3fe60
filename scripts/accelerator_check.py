r"""The Python parts of scripts/accelerator_check.sh (run that; this file is its helper).

  python scripts/accelerator_check.py --part=modules
  python scripts/accelerator_check.py --part=timings --out=DIR [--small] [--policies=...]
  python scripts/accelerator_check.py --part=report --out=DIR

`modules` names every module the check needs that this Python lacks (and exits 2), without
installing anything: on an accelerator machine the CUDA- or TPU-enabled jax must stay. `timings`
compiles and times, at CIFAR-10 shapes (wrn40_2 -> wrn16_1, batch 256, random weights), the Fast-5
synthesis call, one KD step and one DeepInversion step under each precision policy, with XLA's FLOP
count, the achieved FLOP/s and its fraction of the device's peak
(`fastdfkd_jax.benchmark.steps`), into DIR/timings.json. `--small`: tiny models and batches at
the same image shape (the CPU test of this script). `report` gathers DIR/timings.json, the test
log and the digits demo's summaries into DIR/accelerator_check.json and DIR/accelerator_check.md.
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
FAST_SPEC = os.path.join(CONFIGS, "dfkd_cifar.py:cifar10,fast5,wrn40_2-wrn16_1")
DEEPINV_SPEC = os.path.join(CONFIGS, "dfkd_cifar.py:cifar10,deepinv2k,wrn40_2-wrn16_1")
# import name -> the pip package that provides it.
REQUIRED = {
    "jax": "jax",
    "flax": "flax",
    "optax": "optax",
    "orbax.checkpoint": "orbax-checkpoint",
    "chex": "chex",
    "ml_collections": "ml-collections",
    "yaml": "PyYAML (needed by ml-collections)",
    "absl": "absl-py",
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "tqdm": "tqdm",
    "tensorboardX": "tensorboardX",
    "etils": "etils",
    "pytest": "pytest",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (argparse: the `modules` part must run before absl is known present)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("modules", "timings", "report"), default="modules")
    parser.add_argument("--out", default="", help="Output directory.")
    parser.add_argument("--small", action="store_true", help="Tiny models and batches (CPU test).")
    parser.add_argument(
        "--policies", default="tensorfloat32,bfloat16", help="Precision policies to time."
    )
    parser.add_argument("--repeats", type=int, default=10, help="Timed calls per step (median).")
    parser.add_argument("--batch_size", type=int, default=256, help="Batch (not with --small).")
    return parser.parse_args(argv)


def missing_modules() -> list[str]:
    """The `REQUIRED` modules this Python cannot import, as 'module (pip package)'."""
    out = []
    for module, package in REQUIRED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            out.append(f"{module} ({package})")
    return out


def check_modules() -> None:
    missing = missing_modules()
    if missing:
        sys.stderr.write(
            "accelerator_check: this Python lacks: " + ", ".join(missing) + ".\n"
            "Install them without touching jax (e.g. `pip install --no-deps ml-collections "
            "PyYAML`, or wheels brought from a machine with network: `pip download --no-deps "
            "--only-binary=:all: --python-version X.Y PACKAGE`), then rerun.\n"
        )
        sys.exit(2)
    import jax

    sys.stdout.write(
        f"accelerator_check: jax {jax.__version__}, backend {jax.default_backend()}, "
        f"devices {jax.devices()}\n"
    )


def timings(args: argparse.Namespace) -> None:
    import jax

    from fastdfkd_jax import compilation
    from fastdfkd_jax.benchmark import steps

    compilation.use_persistent_cache("")
    device = jax.devices()[0]
    result = dict(
        device_kind=device.device_kind,
        platform=device.platform,
        jax=jax.__version__,
        small=args.small,
        shapes="tiny models, batch 4, 32x32x3"
        if args.small
        else f"CIFAR-10 32x32x3, wrn40_2 -> wrn16_1, batch {args.batch_size}",
        rows=[],
    )

    def write(row: dict) -> None:
        # After every step, so a part stopped by its time limit still reports what it has.
        result["rows"].append(row)
        with open(os.path.join(args.out, "timings.json"), "w") as f:
            json.dump(result, f, indent=2)

    for policy in args.policies.split(","):
        steps.time_steps(
            FAST_SPEC,
            DEEPINV_SPEC,
            policy=policy,
            repeats=args.repeats,
            small=args.small,
            batch_size=0 if args.small else args.batch_size,
            on_row=write,
        )


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# pytest -q progress: one character per test, then the percentage done.
_PROGRESS = re.compile(r"^([.FEsxX]+)\s*(\[\s*\d+%\])?$")
_FAILURE_HEADER = re.compile(r"^_{3,} (\S.*?) _{3,}$")


def _tests_line(path: str) -> str:
    """The last summary line of a pytest log ('5 passed, 1 failed in 80.1s'); for a log cut off
    before its summary (the time limit), the counts its progress lines show and the failures
    named so far; else why none.
    """
    if not os.path.exists(path):
        return "not run"
    lines = [line.strip() for line in open(path).read().splitlines() if line.strip()]
    found = [line for line in lines if re.search(r"\d+ (passed|failed|error)", line)]
    if found:
        return found[-1].strip("= ")
    # Progress lines come before the first section ('=== FAILURES ===', whose "E   ..." lines
    # would read as errors).
    sections = [i for i, line in enumerate(lines) if line.startswith("===")]
    progress = lines[: sections[0]] if sections else lines
    marks = "".join(m.group(1) for m in map(_PROGRESS.match, progress) if m)
    if not marks:
        return lines[-1] if lines else "no output"
    failed = [m.group(1) for m in map(_FAILURE_HEADER.match, lines) if m]
    counts = ", ".join(
        f"{marks.count(mark)} {name}"
        for mark, name in ((".", "passed"), ("F", "failed"), ("E", "error"), ("s", "skipped"))
        if marks.count(mark)
    )
    named = f" ({', '.join(failed)})" if failed else ""
    return f"cut off before pytest's summary: {counts}{named}"


def report(out: str) -> None:
    from fastdfkd_jax import reporting

    timing_result = _read_json(os.path.join(out, "timings.json")) or {}
    demo = {
        name: _read_json(os.path.join(out, "demo", name, "summary.json"))
        for name in ("teacher", "dfkd_fast5")
    }
    result = dict(
        python=platform.python_version(),
        tests=_tests_line(os.path.join(out, "tests.log")),
        demo={
            name: None if s is None else {k: v for k, v in s.items() if k != "config"}
            for name, s in demo.items()
        },
        timings=timing_result,
    )
    with open(os.path.join(out, "accelerator_check.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        f"# Accelerator check: {timing_result.get('device_kind', '?')} "
        f"(jax {timing_result.get('jax', '?')})",
        "",
        f"Backend-dependent tests: {result['tests']}",
        "",
    ]
    student = demo["dfkd_fast5"]
    if student:
        lines.append(
            "Digits demo (Fast-5): teacher {:.2%}, student {:.2%}; total {:.1f} s = synthesis "
            "{:.1f} + KD {:.1f} + evaluation {:.1f} + compile {:.1f} + other {:.1f}".format(
                student["teacher_test_accuracy"],
                student["student_test_accuracy"],
                student["total_seconds"],
                student["synthesis_seconds"],
                student["kd_seconds"],
                student["eval_seconds"],
                student["compile_seconds"],
                student.get("other_seconds", float("nan")),
            )
        )
        lines.append("")
    if timing_result:
        lines.append(f"Compiled steps at {timing_result['shapes']}:")
        lines.append("")
        rows = [
            (
                r["step"],
                r["policy"],
                r["batch"],
                f"{r['compile_s']:.1f}",
                f"{1e3 * r['median_s']:.2f}",
                f"{r['gflop']:.1f}",
                f"{r['tflops_achieved']:.2f}",
                "-" if r["peak_fraction"] is None else f"{r['peak_fraction']:.1%}",
            )
            for r in timing_result["rows"]
        ]
        header = (
            "step", "policy", "batch", "compile (s)", "median (ms)", "GFLOP / call",
            "TFLOP/s", "of peak",
        )  # fmt: skip
        lines.append(reporting.markdown_table(header, rows))
    with open(os.path.join(out, "accelerator_check.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.part == "modules":
        check_modules()
        return
    if not args.out:
        sys.exit("accelerator_check: --out is required")
    os.makedirs(args.out, exist_ok=True)
    if args.part == "timings":
        timings(args)
    else:
        report(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
