"""Stored runs side by side: the table of a few run folders that differ in a few settings.

A run folder holds `seed<k>/summary.json` (+ `metrics.jsonl`) for each seed it was run with: a
benchmark method's records (`results/bench_<data>/<backend>/<method>`) or one variant of an
experiment (`results/experiments/<name>/<variant>`). `result(folders)` makes one row per folder:
the final and best-over-epochs student accuracy (mean over seeds with the min-max), the synthesis
seconds (mean), and what its runs compute differently from the first folder's: the settings that
differ (`fingerprint.resolved_settings`: paths and other keys that cannot change a result left
out; the seed is a column of its own) and another teacher. A docs page shows `markdown(result)`
between `<!-- runs:F1,F2,... -->` and `<!-- /runs -->` (`scripts/bench_report.py` writes it; a
test keeps it equal), so a figure quoted from an experiment is its stored record's.
"""

import json
from typing import Any

from fastdfkd_jax import fingerprint, provenance, reporting
from fastdfkd_jax.benchmark import records

RUNS = "runs"  # the docs marker's kind: <!-- runs:F1,F2 --> ... <!-- /runs -->
SEPARATOR = ","  # between the folders of one marker
TEACHER = "teacher"  # the difference named when the teacher's parameters differ
_SEED_KEY = "seed"
_ROWS_DIFFER = "the settings differ between seeds"


def folders_of(marked: str) -> list[str]:
    """The run folders a marker's path names (`F1,F2,...`)."""
    return marked.split(SEPARATOR)


def _settings(summary: dict) -> dict[str, Any]:
    """What a stored run computed from, seed aside: its resolved settings and its teacher."""
    out = fingerprint.resolved_settings(summary["config"], summary["backend"])
    out.pop(_SEED_KEY, None)
    out[TEACHER] = summary.get("fingerprint_record", {}).get("teacher_digest")
    return out


def differences(reference: dict[str, Any], summary: dict) -> dict[str, Any]:
    """{dotted key: value} where `summary`'s run (a summary.json) computes from other settings than
    the `reference` settings (`_settings` of the reference run; None for a key the run lacks);
    `TEACHER` -> its digest for another teacher.
    """
    own = _settings(summary)
    keys = sorted(set(reference) | set(own))
    return {k: own.get(k) for k in keys if reference.get(k) != own.get(k)}


def row(folder: str, summaries: list[dict], reference: dict[str, Any]) -> dict:
    """One folder's row: its seeds' accuracies and synthesis seconds, and its `differences` from
    the `reference` settings (the same for every seed: a folder is one variant).
    """
    per_seed = [differences(reference, s) for s in summaries]
    if any(d != per_seed[0] for d in per_seed):
        raise ValueError(f"{folder}: {_ROWS_DIFFER}: {per_seed}.")
    return dict(folder=folder, **records.over_seeds(summaries), differences=per_seed[0])


def result(folders: list[str]) -> dict:
    """The rows of `folders` (paths as given), each compared with the first folder's first run.

    Raises:
      ValueError: naming a folder without a stored run.

    """
    loaded = [(folder, records.load_seeds(folder)) for folder in folders]
    empty = [folder for folder, summaries in loaded if not summaries]
    if empty:
        raise ValueError(f"No stored run (seed<k>/{records.SUMMARY}) in {', '.join(empty)}.")
    reference = _settings(loaded[0][1][0])  # once, not per row and seed
    return dict(rows=[row(folder, summaries, reference) for folder, summaries in loaded])


def _value(value: Any) -> str:
    return json.dumps(value) if value is not None else "(not set)"


def _difference_text(r: dict, first: bool) -> str:
    if first:
        return "(the reference)"
    if not r["differences"]:
        return "none"
    return ", ".join(
        f"another teacher ({str(value)[:12]})" if key == TEACHER else f"`{key}={_value(value)}`"
        for key, value in r["differences"].items()
    )


def markdown(res: dict) -> str:
    """The rows of `result` as a markdown table, with a line saying how to read it."""
    header = (
        "records", "seeds", "student acc. % final: mean (min-max)", "best over epochs",
        "synthesis s (mean)", "code", "settings that differ from the first row's",
    )  # fmt: skip
    cells = [
        (
            f"`{r['folder']}`",
            ", ".join(str(s) for s in r["seeds"]),
            records.spread(r, "student_accuracy"),
            records.spread(r, "student_best_accuracy"),
            f"{r['synthesis_seconds']:.1f}",
            ", ".join(provenance.short_commit(c) for c in r["commits"]),
            _difference_text(r, i == 0),
        )
        for i, r in enumerate(res["rows"])
    ]
    note = (
        "Generated from the stored records by `python scripts/bench_report.py`. Accuracy: mean "
        "over the seeds (min-max); best = the best over the evaluated epochs. Settings: what "
        "decides the result (the run fingerprint's settings, paths left out, the seed aside)."
    )
    return reporting.markdown_table(header, cells, align="lrrrrll") + "\n\n" + note + "\n"
