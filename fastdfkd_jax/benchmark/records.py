"""The benchmark's table from its stored records: the runs kept in the repository, not a workdir.

A results folder (`results/bench_<data>/<backend>/`, the benchmark's `results_dir`) holds
`<method>/seed<k>/summary.json` (+ `metrics.jsonl`) for every finished run and `timing.json`, the
timing pass's medians on that kind of device (`write_timing`). `result_from_records` turns them into
the table's rows (accuracy as the mean over seeds with its min-max; synthesis time as the runs'
mean; per call as the timing pass's median, or the runs' mean per call where no timing pass was
stored), and `markdown` into the table that docs/benchmarks.md shows between the markers
`<!-- records:PATH -->` and `<!-- /records -->` (`scripts/bench_report.py` writes them; a test
keeps them equal).
"""

import json
import math
import os
import re
import statistics

from fastdfkd_jax import fingerprint, methods, provenance, reporting, synthesis
from fastdfkd_jax.benchmark import configs, report

SUMMARY = "summary.json"
TIMING = "timing.json"
_SEED_DIR = re.compile(r"seed(\d+)")
# A generated block in a docs page: `<!-- KIND:PATH -->` ... `<!-- /KIND -->`, KIND `RECORDS` (a
# benchmark's table, this module) or `side_by_side.RUNS` (run folders side by side).
RECORDS = "records"
BEGIN = "<!-- {kind}:{path} -->"
END = "<!-- /{kind} -->"


def load_seeds(folder: str) -> list[dict]:
    """The summaries of the runs in `folder` (`seed<k>/summary.json`), by seed; [] if none."""
    if not os.path.isdir(folder):
        return []
    seeds = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(folder)
        if (m := _SEED_DIR.fullmatch(name)) and os.path.exists(os.path.join(folder, name, SUMMARY))
    )
    summaries = []
    for _, name in seeds:
        with open(os.path.join(folder, name, SUMMARY)) as f:
            summaries.append(json.load(f))
    return summaries


def load_runs(results_dir: str) -> dict[str, list[dict]]:
    """{method: [summary of each seed's run, by seed]} of the records in `results_dir`."""
    runs = {}
    if not os.path.isdir(results_dir):
        return runs
    for method in sorted(os.listdir(results_dir)):
        summaries = load_seeds(os.path.join(results_dir, method))
        if summaries:
            runs[method] = summaries
    return runs


def load_timing(results_dir: str) -> dict | None:
    path = os.path.join(results_dir, TIMING)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_timing(results_dir: str, result: dict) -> None:
    """Stores the timing pass of a benchmark `result` (its per-call medians per method, the cost
    table and the profile when measured) as `results_dir/timing.json`.
    """
    keys = (
        "g_steps", "calls_per_epoch", "seconds_per_batch", "seconds_per_batch_min",
        "seconds_per_batch_max", "timing_calls", "timing_scale", "timing_compile_seconds",
    )  # fmt: skip
    stored = dict(
        device=result["device"],
        timing=result["timing"],
        methods={r["method"]: {k: r[k] for k in keys} for r in result["rows"]},
        meta_gradient_cost=result.get("meta_gradient_cost"),
        profile=result.get("profile"),
    )
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, TIMING), "w") as f:
        json.dump(reporting.jsonable(stored), f, indent=1, sort_keys=True)


def mean_min_max(values: list[float | None]) -> tuple[float | None, float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None, None
    return statistics.fmean(values), min(values), max(values)


def over_seeds(summaries: list[dict]) -> dict:
    """What a row shows of one method's (or variant's) runs, one summary per seed: the seeds, the
    final and best-over-epochs student accuracy and the synthesis seconds, each as its mean with
    `_min` and `_max`, and the commits the runs were made at.
    """
    out = dict(seeds=[s["config"]["seed"] for s in summaries])
    for key, values in (
        ("student_accuracy", [s["student_test_accuracy"] for s in summaries]),
        ("student_best_accuracy", [s.get("student_best_test_accuracy") for s in summaries]),
        ("synthesis_seconds", [s["synthesis_seconds"] for s in summaries]),
    ):
        out[key], out[f"{key}_min"], out[f"{key}_max"] = mean_min_max(values)
    out["commits"] = sorted({str(s.get("environment", {}).get("commit")) for s in summaries})
    return out


def row(method: str, summaries: list[dict], timing: dict | None) -> dict:
    """One table row of `method` from its runs' summaries (one per seed) and the stored timing."""
    config = fingerprint.in_todays_layout(summaries[0]["config"])
    stats = over_seeds(summaries)
    calls = summaries[0]["synthesis_calls"]
    timed = (timing or {}).get("methods", {}).get(method)
    return dict(
        method=method,
        label=report.method_label(method),
        synthesis_method=config.synthesis.method,
        g_steps=synthesis.inner_steps(config.synthesis),
        meta_gradient=summaries[0]["meta_gradient"],
        **stats,
        teacher_accuracy=summaries[0]["teacher_test_accuracy"],
        batches=config.epochs,
        calls_per_epoch=configs.calls_per_epoch(config),
        seconds_per_batch=(
            timed["seconds_per_batch"] if timed else stats["synthesis_seconds"] / calls
        ),
        per_call_from="timing pass" if timed else "runs",
        compile_seconds=statistics.fmean(s["synthesis_compile_seconds"] for s in summaries),
        extrapolated=False,
        devices=sorted({s.get("environment", {}).get("device", "?") for s in summaries}),
    )


def result_from_records(results_dir: str) -> dict:
    """The table of the records in `results_dir`: rows in the benchmark's method order, speed-ups
    against DeepInv-2k where it has a record, and the targets judged on the means over seeds.
    """
    runs = load_runs(results_dir)
    timing = load_timing(results_dir)
    order = [m for m in methods.BENCH_METHODS if m in runs]
    order += sorted(m for m in runs if m not in order)
    rows = [row(m, runs[m], timing) for m in order]
    # A shorter run (DeepInv-2k's and CMI-500's `short_methods` runs: fewer batches, the same
    # total KD steps) is marked; the schedule named is the full one, the others' records'.
    full_batches = max((r["batches"] for r in rows), default=0)
    for r in rows:
        r["shorter_run"] = r["batches"] < full_batches
        if r["shorter_run"]:  # the figure's point: its total at the full schedule's batches
            r["full_schedule_seconds"] = r["synthesis_seconds"] * full_batches / r["batches"]
    report.speedups(rows)
    full = [m for m, r in zip(order, rows, strict=True) if not r["shorter_run"]]
    first = runs[full[0]][0]["config"] if full else {}
    return dict(
        results_dir=results_dir,
        dataset=first.get("dataset", {}).get("name"),
        teacher=first.get("teacher", {}).get("arch"),
        student=first.get("student", {}).get("arch"),
        schedule=first
        and dict(
            epochs=first["epochs"],
            warmup=first["warmup"],
            kd_steps=first["kd"]["steps"],
            kd_batch_size=first["kd"]["batch_size"],
            synthesis_batch_size=first["synthesis"]["batch_size"],
        ),
        timing_device=timing and timing["device"],
        missing=[m for m in methods.BENCH_METHODS if m not in runs],
        rows=rows,
        targets=report.targets(rows),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def spread(r: dict, key: str) -> str:
    if r[key] is None:
        return "n/a"
    if len(r["seeds"]) == 1:
        return _pct(r[key])
    return f"{_pct(r[key])} ({_pct(r[key + '_min'])}-{_pct(r[key + '_max'])})"


def markdown(result: dict, projections: list[str] = ()) -> str:
    """The table of `result_from_records` as markdown (what docs/benchmarks.md shows), with the
    `projection_lines` given after it.
    """
    rows = result["rows"]
    if not rows:
        return f"No stored record in `{result['results_dir']}` yet.\n"
    sched = result["schedule"]
    header = (
        "method", "seeds", "student acc. % final: mean (min-max)", "best over epochs",
        "synthesis s (run mean)", "s / call", "calls / epoch", "speed-up vs DeepInv-2k",
        "speed-up per epoch",
    )  # fmt: skip
    cells = [
        (
            r["label"],
            len(r["seeds"]),
            spread(r, "student_accuracy"),
            spread(r, "student_best_accuracy"),
            f"{r['synthesis_seconds']:.1f}" + (" ‡" if r.get("shorter_run") else ""),
            f"{r['seconds_per_batch']:.4f}" + ("" if r["per_call_from"] == "timing pass" else " †"),
            report.calls_label(r["calls_per_epoch"]),
            "n/a" if r["speedup"] is None else f"{r['speedup']:.1f}x",
            "n/a" if r["speedup_per_batch"] is None else f"{r['speedup_per_batch']:.1f}x",
        )
        for r in rows
    ]
    devices = sorted({d for r in rows for d in r["devices"]})
    commits = sorted({provenance.short_commit(c) for r in rows for c in r["commits"]})
    lines = [
        f"Teacher `{result['teacher']}` (test accuracy {_pct(rows[0]['teacher_accuracy'])}%) -> "
        f"student `{result['student']}`; {sched['epochs']} synthesized batches of "
        f"{sched['synthesis_batch_size']}, warmup {sched['warmup']}, {sched['kd_steps']} KD "
        f"steps of {sched['kd_batch_size']} per epoch. Records: `{result['results_dir']}` "
        f"(runs on {'; '.join(devices)}; code {', '.join(commits)}).",
        "",
        reporting.markdown_table(header, cells, align="lrrrrrrrr"),
        "",
        "Accuracy: mean over the seeds (min-max); final = the last epoch, best = the best over "
        "the evaluated epochs (what the paper reports). Synthesis s: the runs' measured synthesis "
        "time, mean over seeds. s / call: "
        + (
            f"the timing pass's median on {result['timing_device']}"
            if result["timing_device"]
            else "no timing pass stored yet"
        )
        + "; † the runs' mean per call instead.",
    ]
    shorter = [r for r in rows if r.get("shorter_run")]
    if shorter:
        lines += [
            "",
            "‡ A shorter run: "
            + "; ".join(f"{r['label']} {r['batches']} batches" for r in shorter)
            + f" instead of {sched['epochs']}, with the same total KD steps. Its accuracy is that "
            "run's; its synthesis s are that run's, and the speed-ups compare them scaled to "
            f"{sched['epochs']} batches.",
        ]
    if result["missing"]:
        lines += ["", f"Not run yet: {', '.join(result['missing'])}."]
    targets = _target_lines(result["targets"])  # none until the targets' methods are stored
    if targets:
        lines += ["", *targets]
    if projections:
        lines += ["", *projections]
    return "\n".join(lines) + "\n"


def projection_lines(result: dict, schedules: dict[str, tuple[int, int]], where: str) -> list[str]:
    """The table's per-call times projected to another schedule (`where`, e.g. CIFAR's).

    Args:
      result: `result_from_records`.
      schedules: method -> (synthesis calls per epoch, epochs) of the other schedule.
      where: its name in the text.

    Returns:
      Markdown lines: each method's projected total synthesis seconds (per call x calls per epoch
      x epochs) and its ratio to Fast-5's, all marked as a projection. A generative method's calls
      grow with the KD steps of an epoch, a pool method's with the epochs only.
    """
    rows = {r["method"]: r for r in result["rows"] if r["method"] in schedules}
    if "fast5" not in rows or len(rows) < 2:
        return []
    projected = {m: r["seconds_per_batch"] * math.prod(schedules[m]) for m, r in rows.items()}
    parts = [
        f"{r['label']} {projected[m]:.0f} s ({schedules[m][0]} calls x {schedules[m][1]} epochs, "
        f"{projected[m] / projected['fast5']:.1f}x Fast-5)"
        for m, r in rows.items()
    ]
    return [
        f"PROJECTION to {where}'s schedule (not measured: this table's per-call times at "
        f"{where}'s call counts): " + "; ".join(parts) + "."
    ]


def _target_lines(targets: dict) -> list[str]:
    lines = []
    for key, check in targets.items():
        if check is None:
            continue
        which, verdict = report.accuracy_name(check), report.verdict(check)
        if key.startswith("deepinv"):
            lines.append(
                f"- Fast-5 within {check['points']:g} points of DeepInv-2k at >= "
                f"{check['min_speedup']:g}x ({which}): gap {check['accuracy_gap_points']:.2f} "
                f"points at {check['speedup']:.1f}x -> {verdict}."
            )
        else:
            lines.append(
                f"- Fast-5 at least as accurate as DAFL, ZSKT, DFQ at less synthesis time "
                f"({which}): {report.against_text(check)} -> {verdict}."
            )
    return lines


def _marker_span(text: str, path: str, kind: str = RECORDS) -> tuple[int, int] | None:
    """(start, end) of the generated block of `path`: between its markers, each on a line alone."""
    begin = re.search(rf"^{re.escape(BEGIN.format(kind=kind, path=path))}$", text, re.MULTILINE)
    if begin is None:
        return None
    end_marker = END.format(kind=kind)
    end = re.compile(rf"^{re.escape(end_marker)}$", re.MULTILINE).search(text, begin.end())
    if end is None:
        raise ValueError(f"The generated block of {path} has no closing {end_marker!r}.")
    return begin.end(), end.start()


def docs_section(text: str, path: str, kind: str = RECORDS) -> str | None:
    """The generated block of `path` in a docs page's `text` (between the markers), or None."""
    span = _marker_span(text, path, kind)
    return None if span is None else text[span[0] : span[1]].strip("\n") + "\n"


def replace_docs_section(text: str, path: str, table: str, kind: str = RECORDS) -> str:
    """`text` with the generated block of `path` replaced by `table`."""
    start, end = _marker_span(text, path, kind)
    return text[:start] + "\n" + table.rstrip("\n") + "\n" + text[end:]


def marked_paths(text: str, kind: str = RECORDS) -> list[str]:
    """The paths that a docs page's markers of `kind` name (each marker on a line alone)."""
    return re.findall(rf"^<!-- {kind}:(\S+) -->$", text, re.MULTILINE)
