"""The benchmark's table from stored records: known values, the docs kept equal to the records."""

import json
import os

import pytest

from fastdfkd_jax import config_args
from fastdfkd_jax.benchmark import records, report, side_by_side
from tests.conftest import REPO, load_script


def _summary(method, seed, accuracy, best, seconds, g_steps=5, per_round=0):
    return dict(
        config=dict(
            seed=seed,
            epochs=40,
            warmup=5,
            dataset=dict(name="digits"),
            teacher=dict(arch="t"),
            student=dict(arch="s"),
            kd=dict(steps=50, batch_size=128),
            synthesis=dict(method=method, g_steps=g_steps, kd_steps_per_round=per_round,
                           batch_size=128),
        ),
        meta_gradient="first_order",
        student_test_accuracy=accuracy,
        student_best_test_accuracy=best,
        teacher_test_accuracy=0.99,
        synthesis_seconds=seconds,
        synthesis_calls=40 * (50 // per_round if per_round else 1),
        synthesis_compile_seconds=1.0,
        environment=dict(device="cpu", commit="abc"),
    )  # fmt: skip


def _store(results, method, summary):
    directory = results / method / f"seed{summary['config']['seed']}"
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))


def test_rows_are_means_over_seeds_with_their_spread(tmp_path):
    results = tmp_path / "cpu"
    for seed, acc in enumerate((0.90, 0.96, 0.93)):
        _store(results, "fast5", _summary("fast", seed, acc, acc + 0.01, 8.0 + seed))
    _store(results, "deepinv2k", _summary("deepinversion", 0, 0.97, 0.98, 1600.0, g_steps=2000))
    _store(results, "dafl", _summary("generative", 0, 0.70, 0.72, 20.0, 1, per_round=5))
    result = records.result_from_records(str(results))
    by = {r["method"]: r for r in result["rows"]}
    assert [r["method"] for r in result["rows"]] == ["deepinv2k", "dafl", "fast5"]  # the table's
    fast5 = by["fast5"]
    assert fast5["seeds"] == [0, 1, 2]
    assert fast5["student_accuracy"] == pytest.approx(0.93)
    assert (fast5["student_accuracy_min"], fast5["student_accuracy_max"]) == (0.90, 0.96)
    assert fast5["synthesis_seconds"] == pytest.approx(9.0)
    assert fast5["seconds_per_batch"] == pytest.approx(9.0 / 40)  # no timing pass: run mean
    assert fast5["speedup"] == pytest.approx(1600.0 / 9.0)
    assert by["dafl"]["calls_per_epoch"] == 10
    assert by["dafl"]["seconds_per_batch"] == pytest.approx(20.0 / 400)
    # The targets are judged on the means: gap 4 points (DeepInv-2k 97, Fast-5 93).
    deepinv = result["targets"]["deepinv/student_accuracy"]
    assert deepinv["accuracy_gap_points"] == pytest.approx(4.0) and not deepinv["met"]
    assert "cmi500" in result["missing"] and "fast5" not in result["missing"]
    text = records.markdown(result)
    assert "| Fast-5 | 3 | 93.00 (90.00-96.00) | 94.00 (91.00-97.00) | 9.0 | 0.2250 † |" in text
    assert "| DeepInv-2k | 1 | 97.00 | 98.00 |" in text
    assert "gap 4.00 points at 177.8x -> NOT MET" in text


def test_stored_timing_replaces_the_runs_mean_per_call(tmp_path):
    results = tmp_path / "cpu"
    _store(results, "fast5", _summary("fast", 0, 0.9, 0.9, 8.0))
    keys = dict(
        g_steps=5, calls_per_epoch=1, seconds_per_batch=0.125, seconds_per_batch_min=0.1,
        seconds_per_batch_max=0.2, timing_calls=5, timing_scale=1.0, timing_compile_seconds=2.0,
    )  # fmt: skip
    result = dict(device="my cpu", timing={"repeats": 5}, rows=[dict(method="fast5", **keys)])
    records.write_timing(str(results), result)
    assert records.load_timing(str(results))["methods"]["fast5"] == keys
    (row,) = records.result_from_records(str(results))["rows"]
    assert row["seconds_per_batch"] == 0.125 and row["per_call_from"] == "timing pass"
    assert "the timing pass's median on my cpu" in records.markdown(
        records.result_from_records(str(results))
    )


def test_a_shorter_run_is_marked_and_the_full_schedule_named(tmp_path):
    results = tmp_path / "cpu"
    short = _summary("deepinversion", 0, 0.8, 0.8, 60.0, g_steps=2000)  # 6 calls: 10 s each
    short["config"].update(epochs=6, warmup=0)
    short["config"]["kd"]["steps"] = 292  # (40 - 5) x 50 KD steps in 6 epochs
    short["synthesis_calls"] = 6
    _store(results, "deepinv2k", short)
    _store(results, "fast5", _summary("fast", 0, 0.85, 0.85, 8.0))  # 40 calls: 0.2 s each
    result = records.result_from_records(str(results))
    assert [r["shorter_run"] for r in result["rows"]] == [True, False]
    assert result["schedule"]["epochs"] == 40 and result["schedule"]["kd_steps"] == 50
    fast5 = result["rows"][1]
    assert fast5["speedup"] == pytest.approx(60.0 * 40 / 6 / 8.0)  # DeepInv-2k scaled to 40
    text = records.markdown(result)
    assert "| 60.0 ‡ |" in text and "| 8.0 |" in text
    assert "‡ A shorter run: DeepInv-2k 6 batches instead of 40" in text


def test_calls_per_epoch_shown_whole_or_to_two_decimals():
    """NAYER's average over warmup and later epochs (380 calls in 150) is not printed raw."""
    assert [report.calls_label(c) for c in (1, 16, 80.0, 380 / 150, 3.0)] == [
        "1", "16", "80", "2.53", "3",
    ]  # fmt: skip


def test_docs_section_round_trip():
    text = "a\n<!-- records:results/x -->\nold\n<!-- /records -->\nb\n"
    assert records.marked_paths(text) == ["results/x"]
    assert records.docs_section(text, "results/x") == "old\n"
    new = records.replace_docs_section(text, "results/x", "new table\n")
    assert records.docs_section(new, "results/x") == "new table\n"
    assert new.startswith("a\n") and new.endswith("b\n")


def test_docs_tables_equal_what_the_stored_records_give():
    """Every generated table in docs/ is what scripts/bench_report.py makes of the records now."""
    module = load_script("bench_report")
    pages = [p for p in os.listdir(os.path.join(REPO, "docs")) if p.endswith(".md")]
    marked = [p for p in pages if records.marked_paths(open(os.path.join(REPO, "docs", p)).read())]
    assert "benchmarks.md" in marked
    benchmarks = open(os.path.join(REPO, "docs", "benchmarks.md")).read()
    assert records.marked_paths(benchmarks, side_by_side.RUNS)  # the experiments' tables too
    assert module.stale_docs() == [], "run scripts/bench_report.py"


def test_projection_to_another_schedule_is_marked_and_scales_with_calls(tmp_path):
    results = tmp_path / "cpu"
    _store(results, "fast5", _summary("fast", 0, 0.9, 0.9, 8.0))  # 0.2 s a call (40 calls)
    _store(results, "dafl", _summary("generative", 0, 0.7, 0.7, 20.0, 1, per_round=5))  # 0.05 s
    result = records.result_from_records(str(results))
    (line,) = records.projection_lines(result, {"fast5": (1, 220), "dafl": (80, 200)}, "CIFAR")
    assert line.startswith("PROJECTION to CIFAR's schedule (not measured")
    # Fast-5: 0.2 x 1 x 220 = 44 s; DAFL: 0.05 x 80 x 200 = 800 s, 18.2x Fast-5's.
    assert "Fast-5 44 s (1 calls x 220 epochs, 1.0x Fast-5)" in line
    assert "DAFL 800 s (80 calls x 200 epochs, 18.2x Fast-5)" in line
    assert records.projection_lines(result, {"dafl": (80, 200)}, "CIFAR") == []  # no Fast-5


def _run_summary(overrides=(), seed=0, accuracy=0.9, best=0.92, seconds=10.0, teacher="t1"):
    """A stored run's summary.json of `configs/dfkd_digits.py:fast5` with dotted `overrides`."""
    loaded = config_args.load_config(os.path.join(REPO, "configs", "dfkd_digits.py:fast5"))
    config = json.loads(json.dumps(loaded.to_dict(), default=list))  # as summary.json holds it
    config["seed"] = seed
    for key, value in overrides:
        *path, name = key.split(".")
        block = config
        for part in path:
            block = block[part]
        block[name] = value
    return dict(
        config=config,
        backend="cpu",
        fingerprint_record=dict(teacher_digest=teacher),
        student_test_accuracy=accuracy,
        student_best_test_accuracy=best,
        synthesis_seconds=seconds,
        environment=dict(commit="0123456789abcdef0123+dirty"),
    )


def _store_run(folder, summary):
    directory = folder / f"seed{summary['config']['seed']}"
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))


def test_runs_side_by_side_name_only_what_differs(tmp_path):
    reference = tmp_path / "bench" / "fast5"
    variant = tmp_path / "experiments" / "reset" / "on"
    same = tmp_path / "experiments" / "reset" / "auto_resolved"
    other_teacher = tmp_path / "experiments" / "teacher"
    for seed, acc in enumerate((0.90, 0.96)):  # the seed itself is no difference
        _store_run(reference, _run_summary(seed=seed, accuracy=acc, seconds=8.0 + 2 * seed))
    reset = (("synthesis.fast.reset_l0_epoch", 25), ("synthesis.fast.reset_bn_scale_mean", 1.0))
    _store_run(variant, _run_summary(reset, accuracy=0.95))
    # 'auto' and the value it takes on the run's backend (unrolled on CPU, as the benchmark's
    # records hold it) are one setting.
    _store_run(same, _run_summary((("synthesis.fast.unroll", True),)))
    _store_run(other_teacher, _run_summary(teacher="t2"))
    folders = [str(p) for p in (reference, variant, same, other_teacher)]
    res = side_by_side.result(folders)
    first, on, auto, teacher = res["rows"]
    assert first["seeds"] == [0, 1] and first["student_accuracy"] == pytest.approx(0.93)
    assert first["synthesis_seconds"] == pytest.approx(9.0) and first["differences"] == {}
    assert on["differences"] == {
        "synthesis.fast.reset_bn_scale_mean": 1.0,
        "synthesis.fast.reset_l0_epoch": 25,
    }
    assert auto["differences"] == {}
    assert teacher["differences"] == {side_by_side.TEACHER: "t2"}
    text = side_by_side.markdown(res)
    assert f"| `{folders[0]}` | 0, 1 | 93.00 (90.00-96.00) | 92.00 (92.00-92.00) | 9.0 |" in text
    assert "0123456789ab+dirty | (the reference) |" in text
    assert (
        "| 95.00 | 92.00 | 10.0 | 0123456789ab+dirty | `synthesis.fast.reset_bn_scale_mean=1.0`, "
        "`synthesis.fast.reset_l0_epoch=25` |" in text
    )
    assert text.count("| none |") == 1 and "another teacher (t2)" in text


def test_runs_side_by_side_refuse_a_folder_that_is_not_one_variant(tmp_path):
    mixed = tmp_path / "mixed"
    _store_run(mixed, _run_summary())
    _store_run(mixed, _run_summary((("synthesis.fast.reset_l0_epoch", 25),), seed=1))
    with pytest.raises(ValueError, match="mixed: the settings differ between seeds"):
        side_by_side.result([str(mixed)])
    with pytest.raises(ValueError, match=r"No stored run .* in .*nowhere"):
        side_by_side.result([str(mixed), str(tmp_path / "nowhere")])


def test_runs_markers_round_trip_beside_records_markers():
    text = (
        "<!-- records:results/x -->\nbench\n<!-- /records -->\n"
        "<!-- runs:results/a,results/b -->\nold\n<!-- /runs -->\n"
    )
    assert records.marked_paths(text, side_by_side.RUNS) == ["results/a,results/b"]
    assert side_by_side.folders_of("results/a,results/b") == ["results/a", "results/b"]
    new = records.replace_docs_section(text, "results/a,results/b", "table\n", side_by_side.RUNS)
    assert records.docs_section(new, "results/a,results/b", side_by_side.RUNS) == "table\n"
    assert records.docs_section(new, "results/x") == "bench\n"
