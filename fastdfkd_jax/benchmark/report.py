"""The benchmark's table: its arithmetic (speed-ups, target), markdown, plot, JSON."""

import json
import os

from absl import logging

from fastdfkd_jax import methods, provenance, reporting

BASELINE = "deepinv2k"
MIB = 2**20
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "acceleration.json", "acceleration.md", "acceleration.png"
method_label = methods.label


def speedups(rows: list[dict], baseline: str = BASELINE) -> list[dict]:
    """Adds `speedup` (total synthesis seconds) and `speedup_per_batch` against `baseline`.

    Rows need `method`, `synthesis_seconds` (for `batches` epochs), `batches`,
    `seconds_per_batch` (per synthesis call) and optionally `calls_per_epoch` (default 1). Totals
    are compared for the same number of epochs: a row with other `batches` than the baseline is
    rescaled to the baseline's count first; per batch compares the seconds of one epoch's calls.
    """
    base = next((r for r in rows if r["method"] == baseline), None)
    for row in rows:
        if base is None:
            row["speedup"] = row["speedup_per_batch"] = None
            continue
        total = row["synthesis_seconds"] * base["batches"] / row["batches"]
        row["speedup"] = base["synthesis_seconds"] / total
        row["speedup_per_batch"] = _per_epoch(base) / _per_epoch(row)
    return rows


def _per_epoch(row: dict) -> float:
    return row["seconds_per_batch"] * row.get("calls_per_epoch", 1)


def target_check(
    rows: list[dict],
    method: str = "fast5",
    points: float = 2.0,
    speedup: float = 100.0,
    accuracy: str = "student_accuracy",
) -> dict | None:
    """Whether `method` is within `points` accuracy points of DeepInv-2k at >= `speedup`x.

    `accuracy`: the row key compared ('student_accuracy': final epoch, 'student_best_accuracy':
    best over epochs, the paper's).
    """
    by_name = {r["method"]: r for r in rows}
    if method not in by_name or BASELINE not in by_name:
        return None
    row, base = by_name[method], by_name[BASELINE]
    if row.get(accuracy) is None or base.get(accuracy) is None:
        return None
    gap = 100.0 * (base[accuracy] - row[accuracy])
    return dict(
        method=method,
        accuracy=accuracy,
        accuracy_gap_points=gap,
        speedup=row["speedup"],
        met=bool(gap <= points and row["speedup"] is not None and row["speedup"] >= speedup),
        baseline_extrapolated=base["extrapolated"],
        points=points,
        min_speedup=speedup,
    )


def generative_check(
    rows: list[dict], method: str = "fast5", accuracy: str = "student_accuracy"
) -> dict | None:
    """Whether `method` is at least as accurate as each generative baseline present (DAFL, ZSKT,
    DFQ) at less total synthesis time; `missing` names the baselines not in `rows` yet.

    Totals are compared for the same number of epochs, as in `speedups`: `method`'s total is
    rescaled to the baseline's `batches` first (a generative row from a shorter run counts its
    own epochs).
    """
    by_name = {r["method"]: r for r in rows}
    others = [by_name[m] for m in methods.GENERATIVE_BASELINES if m in by_name]
    if method not in by_name or not others:
        return None
    row = by_name[method]
    if row.get(accuracy) is None or any(o.get(accuracy) is None for o in others):
        return None
    # method's total rescaled to each baseline's epochs, over the baseline's total
    time_ratios = {
        o["method"]: row["synthesis_seconds"]
        * o["batches"]
        / row["batches"]
        / o["synthesis_seconds"]
        for o in others
    }
    against = {
        o["method"]: dict(
            accuracy_points=100.0 * (row[accuracy] - o[accuracy]),
            time_ratio=time_ratios[o["method"]],
            met=bool(row[accuracy] >= o[accuracy] and time_ratios[o["method"]] < 1.0),
        )
        for o in others
    }
    return dict(
        method=method,
        accuracy=accuracy,
        against=against,
        met=all(a["met"] for a in against.values()),
        missing=[m for m in methods.GENERATIVE_BASELINES if m not in by_name],
    )


def targets(rows: list[dict]) -> dict:
    """Both targets on both accuracies (final epoch, best over epochs)."""
    return {
        f"{name}/{acc}": check(rows, accuracy=acc)
        for name, check in (("deepinv", target_check), ("generative", generative_check))
        for acc in ("student_accuracy", "student_best_accuracy")
    }


device_description = provenance.device_description


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def calls_label(calls: float) -> str:
    """Calls per epoch as a table shows them: whole counts as they are, NAYER's average (its warmup
    epochs make more calls than the rest) to two decimals.
    """
    return f"{calls:g}" if float(calls).is_integer() else f"{calls:.2f}"


def _main_table(result: dict) -> list[str]:
    rows = result["rows"]
    sched = result["schedule"]
    header = (
        "method", "g_steps", "meta-gradient", "student acc. (%) final", "best",
        "synthesis s (total)", "s / call (median)", "calls / epoch", "compile s",
        "speed-up vs DeepInv-2k", "speed-up per epoch",
    )  # fmt: skip
    cells = []
    for r in rows:
        mark = " *" if r["extrapolated"] else ""
        cells.append(
            (
                r["label"],
                r["g_steps"],
                r["meta_gradient"],
                f"{_percent(r['student_accuracy'])}{mark}",
                f"{_percent(r.get('student_best_accuracy'))}{mark}",
                f"{r['synthesis_seconds']:.1f}{mark}",
                f"{r['seconds_per_batch']:.4f}",
                calls_label(r.get("calls_per_epoch", 1)),
                f"{r['compile_seconds']:.1f}",
                _ratio(r["speedup"]),
                _ratio(r["speedup_per_batch"]),
            )
        )
    lines = [
        f"# Acceleration benchmark: {result['dataset']}",
        "",
        f"Teacher `{result['teacher']['arch']}` (test accuracy "
        f"{_percent(rows[0]['teacher_accuracy'])}%) -> student `{result['student']}`; "
        f"{sched['epochs']} synthesized batches of {sched['synthesis_batch_size']}, warmup "
        f"{sched['warmup']}, {sched['kd_steps']} KD steps of {sched['kd_batch_size']} per epoch. "
        f"Device: {result['device']}.",
        "",
        reporting.markdown_table(header, cells, align="lrlrrrrrrrr"),
        "",
        "Accuracy: the student's test accuracy at the last epoch (final) and the best over the "
        "evaluated epochs (best: what the paper reports).",
        "",
    ]
    timed_only = [r["label"] for r in rows if r["student_accuracy"] is None]
    if timed_only:
        lines.append(
            f"\\* {', '.join(timed_only)}: EXTRAPOLATED, not run (timing_only): total synthesis "
            f"seconds = median seconds per batch x {rows[0]['batches']} batches; no accuracy."
        )
    for r in rows:
        if r["student_accuracy"] is not None and r["extrapolated"]:
            lines.append(
                f"\\* {r['label']}: EXTRAPOLATED. Total synthesis seconds = median seconds per "
                f"batch x {r['batches']} batches. Student accuracy from a shorter run: "
                f"{r['accuracy_from']}"
                f" (its measured synthesis time: {r['run_synthesis_seconds']:.1f} s for "
                f"{r['run_synthesis_calls']} batches)."
            )
    chunked = result["timing"].get("chunked")
    lines += [
        "",
        f"Timing: {result['timing']['method']}; {result['timing']['repeats']} timed calls per "
        "method. Totals of non-extrapolated rows are the runs' measured synthesis seconds "
        "(generative methods: their generator steps and the sampling of every KD batch, as the "
        "original counts them)."
        + (f" DeepInv-2k and CMI per batch: {chunked}." if chunked else ""),
        "Speed-up = DeepInv-2k total synthesis seconds / the method's, for the same schedule; "
        "per epoch = the ratio of the timing medians times the calls per epoch.",
    ]
    target = result.get("target")
    if target:
        lines += [
            "",
            f"Target (Fast-5 within {target['points']:g} points of DeepInv-2k at >= "
            f"{target['min_speedup']:g}x): gap {target['accuracy_gap_points']:.2f} points at "
            f"{target['speedup']:.1f}x -> {'MET' if target['met'] else 'NOT MET'}"
            + (" (DeepInv-2k extrapolated)" if target["baseline_extrapolated"] else "")
            + " (final-epoch accuracy).",
        ]
    for key, check in (result.get("targets") or {}).items():
        if check is None or key == "deepinv/student_accuracy":
            continue
        if key.startswith("deepinv"):
            lines.append(
                f"Same target on the {accuracy_name(check)} accuracy: gap "
                f"{check['accuracy_gap_points']:.2f} points -> {verdict(check)}."
            )
        else:
            lines.append(
                f"Target (Fast-5 at least as accurate as DAFL, ZSKT, DFQ at less synthesis time; "
                f"{accuracy_name(check)} accuracy): {against_text(check)} -> {verdict(check)}."
            )
    return lines


def accuracy_name(check: dict) -> str:
    """'final' or 'best over epochs': which accuracy a target check compared."""
    return "best over epochs" if check["accuracy"] == "student_best_accuracy" else "final"


def verdict(check: dict) -> str:
    """'MET' or 'NOT MET'; a check met by the rows so far, some of its rows missing, says so."""
    if not check["met"]:
        return "NOT MET"
    if check.get("missing"):
        return f"MET so far ({', '.join(map(method_label, check['missing']))} not run yet)"
    return "MET"


def against_text(check: dict) -> str:
    """A `generative_check`'s comparisons: 'DAFL +1.23 points at 0.45x its synthesis time; ...'."""
    return "; ".join(
        f"{method_label(m)} {a['accuracy_points']:+.2f} points at "
        f"{a['time_ratio']:.2f}x its synthesis time"
        for m, a in check["against"].items()
    )


def _cost_table(cost: list[dict]) -> list[str]:
    header = (
        "g_steps", "variant", "s / call (median)", "x first-order", "peak MiB", "temp MiB",
        "x first-order (peak)", "compile s",
    )  # fmt: skip
    cells = [
        (
            c["g_steps"],
            c["variant"],
            "n/a" if c["median_s"] is None else f"{c['median_s']:.4f}",
            "n/a" if c["time_vs_first_order"] is None else f"{c['time_vs_first_order']:.2f}",
            f"{c['peak_bytes'] / MIB:.2f}",
            f"{c['temp_bytes'] / MIB:.2f}",
            f"{c['memory_vs_first_order']:.2f}",
            f"{c['compile_seconds']:.1f}",
        )
        for c in cost
    ]
    return [
        "",
        "## Exact against first-order meta-gradient (one synthesis call)",
        "",
        "Memory: the compiled executable's `memory_analysis()`, temp + argument + output "
        "bytes. Compile seconds of executables the runs had compiled already (the runs' own "
        "meta-gradient and g_steps) are loads from the compilation cache. '/scan' rows: the "
        "inner steps as one `lax.scan` (the accelerator setting), compiled for their memory only "
        "(XLA:CPU runs scanned convolutions ~8x slower); their ratios are against first-order "
        "with a scan.",
        "",
        reporting.markdown_table(header, cells, align="rlrrrrrr"),
    ]


def _profile_table(profile: dict) -> list[str]:
    total = sum(profile["projected_seconds"].values())
    cells = [
        (name, f"{seconds:.1f}", f"{100 * seconds / total:.1f}%")
        for name, seconds in profile["projected_seconds"].items()
    ]
    cells.append(("total", f"{total:.1f}", "100%"))
    lines = [
        "",
        f"## Where a {method_label(profile['method'])} run's time goes",
        "",
        f"Projected from timed pieces ({profile['epochs']} epochs, "
        f"{profile['kd_steps_per_epoch']} KD steps per epoch after warmup):",
        "",
        reporting.markdown_table(("part", "seconds", "share"), cells),
    ]
    measured = profile["run_measured_seconds"]
    if measured.get("total_seconds") is not None:
        lines += [
            "",
            "Measured in the run itself (summary.json): "
            + ", ".join(
                f"{k.replace('_seconds', '')} {v:.1f} s"
                for k, v in measured.items()
                if v is not None
            )
            + " (other = checkpoints, metrics, samples, data loading).",
        ]
    return lines


def markdown(result: dict) -> str:
    """The benchmark's tables as markdown."""
    lines = _main_table(result)
    if result.get("meta_gradient_cost"):
        lines += _cost_table(result["meta_gradient_cost"])
    if result.get("profile"):
        lines += _profile_table(result["profile"])
    lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Student accuracy against total synthesis seconds (log axis).

    Each method: its final accuracy (filled; hollow where its time is extrapolated) with the
    min-max over seeds as an error bar, its best-over-epochs accuracy (a cross) joined to it, and
    its label inside the axes (left of the point in the right half of the plot).
    """
    import matplotlib  # noqa: PLC0415 (only needed for the figure)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    rows = result["rows"]
    timed_only = all(r["student_accuracy"] is None for r in rows)
    if timed_only:  # no accuracies: total synthesis seconds per method
        for i, r in enumerate(rows):
            ax.barh(
                [i], [r["synthesis_seconds"]], color="C0", alpha=0.5 if r["extrapolated"] else 1
            )
        ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
        ax.set_xscale("log")
        ax.set_xlabel("total synthesis seconds (log)")
        ax.set_title(f"{result['dataset']}: total synthesis time (extrapolated, not run)")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return
    shown = [r for r in rows if r["student_accuracy"] is not None]
    xs = [_seconds(r) for r in shown]
    low, high = min(xs), max(xs)
    # Log-axis room on both sides, so every label stays inside the frame.
    ax.set_xscale("log")
    ax.set_xlim(low / 3, high * 3)
    middle = (low * high) ** 0.5
    for r in shown:
        x, y = _seconds(r), 100 * r["student_accuracy"]
        hollow = _scaled(r)
        if r.get("student_accuracy_min") is not None and len(r.get("seeds") or []) > 1:
            err = [[y - 100 * r["student_accuracy_min"]], [100 * r["student_accuracy_max"] - y]]
            ax.errorbar([x], [y], yerr=err, color="C0", capsize=3, lw=1, zorder=1)
        ax.scatter([x], [y], s=45, zorder=3, facecolors="none" if hollow else "C0", edgecolors="C0")
        best = r.get("student_best_accuracy")
        if best is not None:
            ax.plot([x, x], [y, 100 * best], color="C1", lw=0.8, zorder=2)
            ax.scatter([x], [100 * best], marker="x", color="C1", s=30, zorder=3)
    ax.scatter([], [], s=45, color="C0", label="final accuracy (mean; bar: min-max over seeds)")
    ax.scatter([], [], marker="x", color="C1", label="best over epochs")
    if any(_scaled(r) for r in shown):
        ax.scatter([], [], s=45, facecolors="none", edgecolors="C0", label="time extrapolated")
    ax.legend(fontsize=7, loc="best")
    ys = [
        100 * r[key]
        for r in shown
        for key in (
            "student_accuracy",
            "student_best_accuracy",
            "student_accuracy_min",
            "student_accuracy_max",
        )  # fmt: skip
        if r.get(key) is not None
    ]
    span = max(ys) - min(ys) + 1.0  # points; room below for the labels, above for the markers
    ax.set_ylim(min(ys) - 0.15 * span, max(ys) + 0.08 * span)
    _place_labels(ax, shown, middle)
    ax.set_xlabel("total synthesis seconds (log)")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title(f"{result['dataset']}: accuracy against synthesis time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Label offsets tried in turn (points, from the marker) until a label overlaps no other.
LABEL_OFFSETS = ((6, -10), (6, 4), (6, -20), (6, 14), (6, -30), (6, 24))


def _seconds(r: dict) -> float:
    """A row's total synthesis seconds in the figure: a shorter run's scaled to the full schedule
    (`records`: `full_schedule_seconds`), the others' as measured.
    """
    return r.get("full_schedule_seconds") or r["synthesis_seconds"]


def _scaled(r: dict) -> bool:
    return r["extrapolated"] or bool(r.get("shorter_run"))


def _place_labels(ax, rows: list[dict], middle: float) -> None:
    """Each row's label beside its point, inside the axes, moved up or down past labels already
    placed (left of the point in the right half of the plot).
    """
    fig = ax.figure
    fig.canvas.draw()  # the axes' limits and transforms as they will be drawn
    renderer = fig.canvas.get_renderer()
    placed = []
    for r in sorted(rows, key=_seconds):
        x, y = _seconds(r), 100 * r["student_accuracy"]
        label = r["label"] + (" (time extrapolated)" if _scaled(r) else "")
        right_half = x > middle
        for i, (dx, dy) in enumerate(LABEL_OFFSETS):
            text = ax.annotate(
                label,
                (x, y),
                textcoords="offset points",
                xytext=(-dx if right_half else dx, dy),
                ha="right" if right_half else "left",
                fontsize=7,
                annotation_clip=True,
            )
            box = text.get_window_extent(renderer)
            if i == len(LABEL_OFFSETS) - 1 or not any(box.overlaps(o) for o in placed):
                break  # a free place, or the last one tried: it stays
            text.remove()
        placed.append(box)


def write_outputs(result: dict, workdir: str) -> None:
    """`acceleration.json`, `acceleration.md` and `acceleration.png` in `workdir`."""
    if not reporting.is_primary():
        return
    with open(os.path.join(workdir, JSON_NAME), "w") as f:
        json.dump(result, f, indent=2, default=float)
    with open(os.path.join(workdir, MARKDOWN_NAME), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(workdir, PLOT_NAME))
    logging.info("Wrote %s, %s, %s in %s.", JSON_NAME, MARKDOWN_NAME, PLOT_NAME, workdir)


def load_result(workdir: str) -> dict:
    with open(os.path.join(workdir, JSON_NAME)) as f:
        return json.load(f)
