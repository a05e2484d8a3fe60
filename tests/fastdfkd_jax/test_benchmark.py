"""The acceleration benchmark: its arithmetic, its outputs on a tiny config, the CIFAR smoke preset."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import pytest
import tensorflow_datasets as tfds

from fastdfkd_jax import backend, benchmark, fingerprint, train
from fastdfkd_jax.benchmark import configs as bench_configs
from fastdfkd_jax.benchmark import report, runs
from fastdfkd_jax.benchmark import steps as benchmark_steps
from tests.conftest import REPO, load_config, load_script, save_random_teacher


def tiny_bench(teacher_dir, methods=("deepinv2k", "fast2", "fast5_exact")):
    """bench_digits:runlocal: the methods' runlocal configs (tiny models), on the random teacher."""
    config = load_config("bench_digits.py:runlocal")
    config.teacher.checkpoint = teacher_dir
    config.methods = methods
    return config


def row(method, seconds, batches, per_batch, accuracy=0.9, extrapolated=False):
    return dict(
        method=method,
        synthesis_seconds=seconds,
        batches=batches,
        seconds_per_batch=per_batch,
        student_accuracy=accuracy,
        extrapolated=extrapolated,
    )


def test_speedup_arithmetic():
    rows = report.speedups(
        [
            row("deepinv2k", 400.0, 40, 10.0, 0.95, extrapolated=True),
            row("fast5", 2.0, 40, 0.05, 0.94),
            # Other batch counts are compared per the baseline's count: 1.0 s / 10 -> 4.0 s / 40.
            row("fast2", 1.0, 10, 0.025, 0.93),
        ]
    )
    by = {r["method"]: r for r in rows}
    assert by["deepinv2k"]["speedup"] == pytest.approx(1.0)
    assert by["fast5"]["speedup"] == pytest.approx(200.0)
    assert by["fast5"]["speedup_per_batch"] == pytest.approx(200.0)
    assert by["fast2"]["speedup"] == pytest.approx(100.0)
    assert by["fast2"]["speedup_per_batch"] == pytest.approx(400.0)
    target = report.target_check(rows)
    assert target["met"] and target["accuracy_gap_points"] == pytest.approx(1.0)
    assert target["baseline_extrapolated"]
    # No baseline: no speed-up.
    assert report.speedups([row("fast5", 2.0, 40, 0.05)])[0]["speedup"] is None
    # A generative method calls its synthesis 10 times per epoch: per epoch it costs 10 calls.
    gen = dict(row("dafl", 8.0, 40, 0.02, 0.9), calls_per_epoch=10)
    by = {r["method"]: r for r in report.speedups([rows[0], gen])}
    assert by["dafl"]["speedup"] == pytest.approx(50.0)
    assert by["dafl"]["speedup_per_batch"] == pytest.approx(10.0 / 0.2)
    rows[1]["student_accuracy"] = 0.92
    assert not report.target_check(rows)["met"]


def test_generative_check_compares_the_same_number_of_epochs():
    fast5 = row("fast5", 2.0, 40, 0.05, 0.94)
    # DAFL ran 10 epochs in 1.0 s: 4.0 s for Fast-5's 40, so Fast-5's 2.0 s is half of it.
    dafl = dict(row("dafl", 1.0, 10, 0.02, 0.93), calls_per_epoch=10)
    check = report.generative_check([fast5, dafl])
    assert check["against"]["dafl"]["time_ratio"] == pytest.approx(0.5)
    assert check["against"]["dafl"]["accuracy_points"] == pytest.approx(1.0)
    assert check["met"]
    # Met by the baselines run so far, not by the others: the verdict names them.
    assert check["missing"] == ["zskt", "dfq"]
    assert report.verdict(check) == "MET so far (ZSKT, DFQ not run yet)"
    assert report.verdict(dict(check, missing=[])) == "MET"
    # Compared raw (2.0 s against 1.0 s) Fast-5 would look twice as slow; slower it fails.
    dafl["synthesis_seconds"] = 0.4  # 1.6 s for 40 epochs
    assert not report.generative_check([fast5, dafl])["met"]
    # Less accurate fails too; without a generative row there is nothing to check.
    dafl["synthesis_seconds"], fast5["student_accuracy"] = 1.0, 0.92
    assert not report.generative_check([fast5, dafl])["met"]
    assert report.generative_check([fast5]) is None


def test_chunked_extrapolation_arithmetic():
    config = load_config("dfkd_digits.py:deepinv2k")
    block = config.synthesis.deepinversion
    assert block.steps == 2000 and block.chunk_steps == "auto"
    block.chunk_steps = "10"  # what 'auto' gives on a CPU
    # Two timed chunks of 10 steps stand for a batch of 2000 steps: x100.
    assert bench_configs.chunked_per_batch_scale(config, 2) == (20, 100.0)
    block.chunk_steps = "0"  # one scan (accelerators): time the whole batch
    assert bench_configs.chunked_per_batch_scale(config, 2) == (2000, 1.0)
    cmi = load_config("dfkd_digits.py:cmi500")
    assert bench_configs.is_chunked(cmi)
    assert not bench_configs.is_chunked(load_config("dfkd_digits.py:fast5"))
    assert bench_configs.chunked_per_batch_scale(cmi, 2) == (20, 25.0)
    assert bench_configs.calls_per_epoch(load_config("dfkd_digits.py:dfq")) == 5  # 50 / 10
    assert bench_configs.calls_per_epoch(cmi) == 1


def test_shorter_run_keeps_the_kd_budget():
    config = load_config("dfkd_digits.py:deepinv2k")  # 40 epochs, warmup 5, 50 KD steps
    short = bench_configs.shorter_config(config, epochs=8)
    assert (short.epochs, short.warmup, short.synthesis.deepinversion.steps) == (8, 1, 2000)
    assert (short.epochs - short.warmup) * short.kd.steps >= 35 * 50
    assert short.kd.steps == 250
    text = bench_configs.describe_shorter_run(config, short)
    assert "deepinv2k with 2000 steps per batch on 8 batches" in text and "1750 in all" in text
    assert (
        bench_configs.shorter_config(config, epochs=8, steps=20).synthesis.deepinversion.steps == 20
    )
    with pytest.raises(ValueError, match="short_steps"):
        bench_configs.shorter_config(config, epochs=8, steps=15)
    with pytest.raises(ValueError, match="short_epochs"):
        bench_configs.shorter_config(config, epochs=0, steps=20)


def _finished(run_dir, config, digest, accuracy):
    """A finished run's files as `train` writes them (fingerprint.json, summary.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = runs.fingerprint.record(
        config.to_dict(), digest, runs.fingerprint.code_versions(1), "cpu"
    )
    runs.fingerprint.write(str(run_dir), record)
    summary = dict(
        config=config.to_dict(),
        student_test_accuracy=accuracy,
        fingerprint=record["fingerprint"],
        fingerprint_record=record,
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, default=list))
    (run_dir / "metrics.jsonl").write_text("{}\n")


def test_reuse_by_fingerprint_not_by_path(tmp_path, monkeypatch):
    """A finished run or a stored record is reused when what decides the result is the same
    (whatever the teacher's path, progress bar or cache), and never when it differs: the settings,
    the teacher's parameters. A run dir of another fingerprint is moved aside, not resumed.
    """
    config = load_config("dfkd_digits.py:fast5")
    config.teacher.checkpoint = "/one/clone/results/teachers/digits"
    trained = []

    def fake_train(config, workdir):
        trained.append(workdir)
        _finished(tmp_path / os.path.relpath(workdir, tmp_path), config, "T", 0.25)
        return {"student_test_accuracy": 0.25}

    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    run_dir, record_dir = tmp_path / "run", tmp_path / "results" / "fast5" / "seed0"
    _finished(run_dir, config, "T", 0.5)
    # Another clone, another cache, no progress bar: the same run.
    other = bench_configs.copy(config)
    other.teacher.checkpoint = "/another/clone/results/teachers/digits"
    other.progress_bar, other.compilation_cache_dir = not config.progress_bar, "/elsewhere"
    got = runs.run_method(other, str(run_dir), "T", str(record_dir))
    assert got["student_test_accuracy"] == 0.5 and not trained
    # It was stored as a record; the record alone is reused (no run dir at all).
    assert sorted(os.listdir(record_dir)) == ["metrics.jsonl", "summary.json"]
    got = runs.run_method(other, str(tmp_path / "fresh"), "T", str(record_dir))
    assert got["student_test_accuracy"] == 0.5 and not trained
    # The same path but a retrained teacher (another digest): a new run; the old one moved aside.
    got = runs.run_method(config, str(run_dir), "T2", "")
    assert got["student_test_accuracy"] == 0.25 and trained == [str(run_dir)]
    assert (tmp_path / "run.superseded.1" / "summary.json").exists()
    # A setting that decides the result (the KD temperature): a new run, moved aside again.
    changed = bench_configs.copy(config)
    changed.kd.temperature = 1.0
    runs.run_method(changed, str(run_dir), "T2", "")
    assert len(trained) == 2 and (tmp_path / "run.superseded.2").exists()


def test_fingerprint_ignores_layout_renames_and_display_keys(monkeypatch):
    config = load_config("dfkd_digits.py:fast5").to_dict()
    record = fingerprint.record(config, "T", fingerprint.code_versions(1), "cpu")
    assert fingerprint.of_record(record) == record["fingerprint"]
    assert "teacher.checkpoint" not in record["settings"]
    # A key moved by a later config layout: a record stored before the move still matches.
    moved = dict(config, kd=dict(config["kd"]))
    moved["kd"]["kd_temperature"] = moved["kd"].pop("temperature")
    monkeypatch.setattr(fingerprint, "RENAMED", {"kd.temperature": "kd.kd_temperature"})
    new = fingerprint.record(moved, "T", fingerprint.code_versions(1), "cpu")
    assert fingerprint.of_record(record) == new["fingerprint"]
    # A key added later: at the value that reproduces the older code it changes nothing ...
    monkeypatch.setattr(fingerprint, "ADDED", {**fingerprint.ADDED, "kd.new_knob": False})
    moved["kd"]["new_knob"] = False
    new = fingerprint.record(moved, "T", fingerprint.code_versions(1), "cpu")
    assert fingerprint.of_record(record) == new["fingerprint"]
    # ... at any other value it is another run.
    moved["kd"]["new_knob"] = True
    new = fingerprint.record(moved, "T", fingerprint.code_versions(1), "cpu")
    assert fingerprint.of_record(record) != new["fingerprint"]
    moved["kd"]["new_knob"] = False
    new = fingerprint.record(moved, "T", fingerprint.code_versions(1), "cpu")
    # Another method's block cannot change this run; the run's own block can.
    other_block = dict(moved, synthesis=dict(moved["synthesis"]))
    other_block["synthesis"]["deepinversion"] = dict(moved["synthesis"]["deepinversion"], lr=0.5)
    same = fingerprint.record(other_block, "T", fingerprint.code_versions(1), "cpu")
    assert same["fingerprint"] == new["fingerprint"]
    own_block = dict(moved, synthesis=dict(moved["synthesis"]))
    own_block["synthesis"]["fast"] = dict(moved["synthesis"]["fast"], lr_g=0.5)
    differs = fingerprint.record(own_block, "T", fingerprint.code_versions(1), "cpu")
    assert differs["fingerprint"] != new["fingerprint"]
    # Another backend, code version or teacher: another run.
    for args in (("T", 1, "gpu"), ("T", 2, "cpu"), ("U", 1, "cpu")):
        other = fingerprint.record(moved, args[0], fingerprint.code_versions(args[1]), args[2])
        assert other["fingerprint"] != new["fingerprint"], args


def test_a_run_given_auto_has_the_fingerprint_of_its_resolved_values():
    """A standalone run (its config's 'auto' keys) and the benchmark's run of the same method
    (resolved values) are one run on the same backend; a value 'auto' does not take there is not.
    """
    for spec in ("dfkd_digits.py:fast5", "dfkd_digits.py:deepinv2k", "dfkd_digits.py:dafl"):
        config = load_config(spec)
        code = fingerprint.code_versions(1)
        given_auto = fingerprint.record(config.to_dict(), "T", code, "cpu")
        resolved = fingerprint.record(backend.resolve(config, "cpu").to_dict(), "T", code, "cpu")
        assert given_auto["fingerprint"] == resolved["fingerprint"], spec
        assert fingerprint.of_record(given_auto) == resolved["fingerprint"], spec
        on_gpu = fingerprint.record(backend.resolve(config, "gpu").to_dict(), "T", code, "cpu")
        assert on_gpu["fingerprint"] != resolved["fingerprint"], spec


def test_a_run_given_explicit_text_has_the_fingerprint_of_its_parsed_values():
    """`--config.synthesis.fast.unroll=true` (the text 'true': the keys are strings) is the run
    the benchmark stores with the bool True, and likewise for the count keys; 'false' where the
    CPU takes 'true' is another run.
    """
    for spec in ("dfkd_digits.py:fast5", "dfkd_digits.py:deepinv2k"):
        config = load_config(spec)
        code = fingerprint.code_versions(1)
        resolved = backend.resolve(config, "cpu")
        as_text = bench_configs.copy(config)
        for block, key in backend.method_keys(config):
            value = resolved.synthesis[block][key]
            as_text.synthesis[block][key] = str(value).lower()
        as_text.kd.steps_per_call = str(resolved.kd.steps_per_call)
        want = fingerprint.record(resolved.to_dict(), "T", code, "cpu")["fingerprint"]
        got = fingerprint.record(as_text.to_dict(), "T", code, "cpu")
        assert got["fingerprint"] == want, spec
        assert fingerprint.of_record(got) == want, spec
    fast5 = load_config("dfkd_digits.py:fast5")
    on_cpu = backend.resolve(fast5, "cpu")
    assert on_cpu.synthesis.fast.unroll is True
    fast5.synthesis.fast.unroll = "false"
    want = fingerprint.record(on_cpu.to_dict(), "T", code, "cpu")["fingerprint"]
    assert fingerprint.record(fast5.to_dict(), "T", code, "cpu")["fingerprint"] != want


def test_stored_records_match_todays_configs():
    """Every stored digits record (several made before the methods' keys moved from one flat
    `synthesis` block into their own blocks) has the fingerprint of today's benchmark config of
    its method and seed on a CPU: `fingerprint.RENAMED` covers every moved key."""
    bench = load_config("bench_digits.py")
    results = bench.results_dir.format(backend="cpu")
    checked = 0
    for method in bench.methods:
        config = backend.resolve(bench_configs.method_config(bench, method), "cpu")
        for seed in bench_configs.seeds_of(bench, method):
            stored = runs._read_summary(runs.run_dir_of(results, method, seed))
            if stored is None:
                continue
            seeded = bench_configs.copy(config)
            seeded.seed = seed
            record = stored["fingerprint_record"]
            today = fingerprint.record(
                seeded.to_dict(), record["teacher_digest"], record["code_versions"], "cpu"
            )
            assert fingerprint.of_record(stored) == today["fingerprint"], (method, seed)
            checked += 1
    assert checked >= 20


def test_presets_build_every_method():
    for name, presets in (
        ("bench_digits.py", ("", "quick", "runlocal")),
        ("bench_fashion_mnist.py", ("", "quick", "runlocal")),
        ("bench_cifar.py", ("cifar10", "cifar10,runlocal", "wrn40_2-wrn16_1")),
        ("bench_cifar.py", ("cifar100", "cifar100,runlocal")),
    ):
        for preset in presets:
            config = load_config(f"{name}:{preset}" if preset else name)
            configs = [bench_configs.method_config(config, m) for m in config.methods]
            # Same teacher, student and KD schedule for every method (on CIFAR each method keeps
            # its original script's epochs and warmup, as in the paper's table).
            keys = ("teacher.arch", "student.arch", "kd.steps")
            if name != "bench_cifar.py" or "runlocal" in preset:
                keys += ("epochs", "warmup")
            for key in keys:
                values = {
                    str(c[key.split(".")[0]][key.split(".")[1]]) if "." in key else str(c[key])
                    for c in configs
                }
                assert len(values) == 1, (name, preset, key, values)
    with pytest.raises(ValueError, match="Unknown config argument 'nope'"):
        load_config("bench_digits.py:nope")
    config = load_config("bench_digits.py:quick")
    config.run.nonsense = 1
    with pytest.raises(ValueError, match="nonsense"):
        bench_configs.method_config(config, "fast5")


@pytest.mark.slow  # the benchmark end to end (about 1 min)
def test_benchmark_outputs_on_a_tiny_config(teacher_dir, tmp_path):
    config = tiny_bench(teacher_dir, methods=("deepinv2k", "fast2", "dfq"))
    config.cost_g_steps, config.profile_method = (), ""
    workdir = str(tmp_path / "bench")
    result = benchmark.run_benchmark(config, workdir)
    for name in ("acceleration.json", "acceleration.md", "acceleration.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "acceleration.json")) as f:
        saved = json.load(f)
    assert [r["method"] for r in saved["rows"]] == ["deepinv2k", "fast2", "dfq"]
    by = {r["method"]: r for r in saved["rows"]}
    deepinv = by["deepinv2k"]
    # Extrapolated: 2000-step batches timed on 2 chunks of 2 steps (x500), 3 batches.
    assert deepinv["extrapolated"] and deepinv["timing_scale"] == pytest.approx(500.0)
    assert deepinv["calls_per_epoch"] == 1
    assert deepinv["synthesis_seconds"] == pytest.approx(3 * deepinv["seconds_per_batch"])
    assert deepinv["run_synthesis_calls"] == 2
    assert "4 steps per batch on 2 batches" in deepinv["accuracy_from"]
    assert deepinv["speedup"] == pytest.approx(1.0)
    for r in saved["rows"]:
        assert r["seconds_per_batch"] > 0 and r["compile_seconds"] > 0
        assert r["timing_calls"] == 2 and 0.0 <= r["student_accuracy"] <= 1.0
        assert r["speedup"] == pytest.approx(deepinv["synthesis_seconds"] / r["synthesis_seconds"])
    # The generative method: kd.steps (2) / kd_steps_per_round (1 in runlocal) calls per epoch,
    # its total the run's measured synthesis time.
    dfq = by["dfq"]
    assert dfq["calls_per_epoch"] == 2 and dfq["run_synthesis_calls"] == 6
    assert dfq["synthesis_seconds"] == pytest.approx(dfq["run_synthesis_seconds"])
    assert dfq["speedup_per_batch"] == pytest.approx(
        deepinv["seconds_per_batch"] / (2 * dfq["seconds_per_batch"])
    )
    assert dfq["student_best_accuracy"] >= dfq["student_accuracy"]
    fast2 = by["fast2"]
    assert not fast2["extrapolated"] and fast2["run_synthesis_calls"] == 3
    assert fast2["synthesis_seconds"] == pytest.approx(fast2["run_synthesis_seconds"])
    assert fast2["speedup"] > 1.0  # 2 steps against 2000
    assert saved["target"] is None  # no fast5 row
    assert saved["targets"]["generative/student_accuracy"] is None
    assert "meta_gradient_cost" not in saved and "profile" not in saved
    text = open(os.path.join(workdir, "acceleration.md")).read()
    assert "| DeepInv-2k | 2000 |" in text and "EXTRAPOLATED" in text
    assert "| Fast-2 | 2 | first_order |" in text and "| DFQ | 1 | none |" in text
    assert result["rows"][1]["student_accuracy"] == fast2["student_accuracy"]


def fake_result():
    rows = report.speedups(
        [
            dict(row("deepinv2k", 400.0, 40, 10.0, 0.95, True), label="DeepInv-2k", g_steps=2000),
            dict(row("fast5", 2.0, 40, 0.05, 0.94), label="Fast-5", g_steps=5),
            dict(row("dafl", 8.0, 40, 0.02, 0.93), label="DAFL", g_steps=1, calls_per_epoch=10),
        ]
    )
    for r in rows:
        r.update(
            student_best_accuracy=r["student_accuracy"] + 0.01,
            meta_gradient="first_order" if r["g_steps"] == 5 else "none",
            teacher_accuracy=1.0,
            compile_seconds=3.0,
            accuracy_from="a stated shorter run" if r["extrapolated"] else "the full run",
            run_synthesis_seconds=1.0,
            run_synthesis_calls=4,
        )
    cost = [
        dict(
            g_steps=2,
            variant=v,
            median_s=t,
            time_vs_first_order=t / 0.1,
            peak_bytes=m,
            temp_bytes=m // 2,
            memory_vs_first_order=m / 2**20,
            compile_seconds=1.0,
        )
        for v, t, m in (
            ("first_order", 0.1, 2**20),
            ("exact", 0.25, 5 * 2**20),
            ("exact+remat", 0.3, 2 * 2**20),
        )
    ]
    profile = dict(
        method="fast5",
        epochs=40,
        kd_steps_per_epoch=50,
        projected_seconds={"inner synthesis steps": 10.0, "student (KD) steps": 90.0},
        run_measured_seconds=dict(total_seconds=120.0, synthesis_seconds=10.0),
    )
    return dict(
        dataset="digits",
        teacher=dict(arch="t", checkpoint="/x"),
        student="s",
        schedule=dict(
            epochs=40, warmup=5, kd_steps=50, kd_batch_size=128, synthesis_batch_size=128
        ),
        device="cpu",
        timing=dict(repeats=5, method="medians", chunked="2 chunks"),
        rows=rows,
        target=report.target_check(rows),
        targets=report.targets(rows),
        meta_gradient_cost=cost,
        profile=profile,
    )


def test_markdown_marks_extrapolation_and_has_every_table(tmp_path):
    result = fake_result()
    text = report.markdown(result)
    assert (
        "| DeepInv-2k | 2000 | none | 95.00 * | 96.00 * | 400.0 * | 10.0000 | 1 | 3.0 | 1.0x | "
        "1.0x |" in text
    )
    assert "| Fast-5 | 5 | first_order | 94.00 | 95.00 | 2.0 | 0.0500 | 1 | 3.0 | 200.0x |" in text
    assert "| DAFL | 1 | none | 93.00 | 94.00 | 8.0 | 0.0200 | 10 | 3.0 | 50.0x | 50.0x |" in text
    assert "EXTRAPOLATED" in text and "a stated shorter run" in text
    assert "gap 1.00 points at 200.0x -> MET (DeepInv-2k extrapolated)" in text
    assert "Same target on the best over epochs accuracy: gap 1.00 points -> MET." in text
    assert "DAFL +1.00 points at 0.25x its synthesis time -> MET" in text
    assert "| 2 | exact | 0.2500 | 2.50 | 5.00 |" in text and "memory_analysis()" in text
    assert "| student (KD) steps | 90.0 | 90.0% |" in text
    # timing_only: no accuracies, every total extrapolated, no target.
    for r in result["rows"]:
        r.update(
            student_accuracy=None,
            student_best_accuracy=None,
            teacher_accuracy=None,
            extrapolated=True,
        )
    assert report.target_check(result["rows"]) is None
    result["target"] = None
    result["targets"] = report.targets(result["rows"])
    text = report.markdown(result)
    assert "| Fast-5 | 5 | first_order | n/a * | n/a * | 2.0 * |" in text
    assert "DeepInv-2k, Fast-5, DAFL: EXTRAPOLATED, not run (timing_only)" in text
    assert "-> MET" not in text and "-> NOT MET" not in text
    report.write_outputs(result, str(tmp_path))
    assert json.load(open(tmp_path / "acceleration.json"))["rows"][0]["extrapolated"]
    assert (tmp_path / "acceleration.png").stat().st_size > 0


@pytest.mark.slow
def test_benchmark_cost_profile_and_reuse(teacher_dir, tmp_path):
    """The exact meta-gradient row, the cost table, the profile, and reusing finished runs."""
    workdir = str(tmp_path / "bench")
    result = benchmark.run_benchmark(tiny_bench(teacher_dir), workdir)
    by = {r["method"]: r for r in result["rows"]}
    assert by["fast5_exact"]["meta_gradient"] == "exact"
    cost = {(c["variant"], c["g_steps"]): c for c in result["meta_gradient_cost"]}
    variants = ("first_order", "exact", "exact+remat")
    assert set(cost) == {(v + scan, 2) for v in variants for scan in ("", "/scan")}
    assert cost[("first_order", 2)]["time_vs_first_order"] == pytest.approx(1.0)
    assert cost[("exact", 2)]["peak_bytes"] > cost[("first_order", 2)]["peak_bytes"]
    # The scan variants: compiled for memory only, against first-order with a scan.
    assert cost[("exact/scan", 2)]["median_s"] is None
    assert cost[("first_order/scan", 2)]["memory_vs_first_order"] == pytest.approx(1.0)
    profile = result["profile"]
    assert profile["method"] == "fast2"
    assert set(profile["per_call_median_s"]) == {
        "inner_steps",
        "synthesis_call",
        "kd_step",
        "evaluation",
        "transfer",
    }
    assert profile["run_measured_seconds"]["total_seconds"] > 0
    text = open(os.path.join(workdir, "acceleration.md")).read()
    assert "exact+remat" in text and "inner synthesis steps" in text
    # A second call reuses the finished runs (same accuracies).
    config = tiny_bench(teacher_dir)
    config.cost_g_steps, config.profile_method = (), ""
    again = benchmark.run_benchmark(config, workdir)
    assert [r["student_accuracy"] for r in again["rows"]] == [
        r["student_accuracy"] for r in result["rows"]
    ]


@pytest.mark.slow  # ResNet-8 at 32x32: about a minute of compilation per preset on 2 cores
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_runlocal_on_mock_data(name, tmp_path):
    config = load_config(f"bench_cifar.py:{name},runlocal")
    num_classes = 10 if name == "cifar10" else 100
    teacher = save_random_teacher(
        str(tmp_path / "teacher"), config.run.teacher.arch, name, (32, 32, 3), num_classes
    )
    config.teacher.checkpoint = teacher
    config.run.dataset = ml_collections.ConfigDict(dict(data_dir=str(tmp_path / "tfds")))
    workdir = str(tmp_path / "bench")
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        result = benchmark.run_benchmark(config, workdir)
    assert result["dataset"] == name
    assert [r["method"] for r in result["rows"]] == ["deepinv2k", "fast2"]
    assert result["rows"][0]["extrapolated"]
    assert os.path.exists(os.path.join(workdir, "acceleration.png"))


# -- compiled step timings and the accelerator check ---------------------------------------------
ACCEL_CHECK = os.path.join(REPO, "scripts", "accelerator_check.py")


def test_peak_table():
    assert benchmark_steps.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
    assert benchmark_steps.peak_flops("NVIDIA H100 PCIe", "tensorfloat32") == 378e12
    assert benchmark_steps.peak_flops("NVIDIA H200", "highest") == 67e12
    assert benchmark_steps.peak_flops("cpu", "highest") is None


@pytest.mark.slow  # a minute: three compiled steps under two precision policies
def test_accelerator_check_timings_and_report_at_tiny_shapes(tmp_path):
    """The timing and report parts of scripts/accelerator_check.sh, tiny models on this CPU."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    common = [sys.executable, ACCEL_CHECK, f"--out={tmp_path}"]
    subprocess.run(
        [*common, "--part=timings", "--small", "--repeats=1", "--policies=highest,bfloat16"],
        check=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    subprocess.run([*common, "--part=report"], check=True, cwd=REPO, env=env, timeout=120)
    with open(tmp_path / "timings.json") as f:
        timings = json.load(f)
    assert timings["platform"] == "cpu" and timings["small"]
    rows = {(r["step"], r["policy"]): r for r in timings["rows"]}
    assert sorted(rows) == sorted(
        (s, p) for s in benchmark_steps.STEPS for p in ("highest", "bfloat16")
    )
    for row in rows.values():
        assert row["median_s"] > 0 and row["gflop"] > 0 and row["tflops_achieved"] > 0
        assert row["peak_fraction"] is None  # no peak for a CPU
    with open(tmp_path / "accelerator_check.json") as f:
        assert json.load(f)["tests"] == "not run"
    table = (tmp_path / "accelerator_check.md").read_text()
    assert "| synthesis | bfloat16 | 4 |" in table


def load_accelerator_check():
    return load_script("accelerator_check")


def test_accelerator_check_names_missing_modules(monkeypatch):
    module = load_accelerator_check()
    monkeypatch.setitem(module.REQUIRED, "no_such_module_xyz", "no-such-package")
    assert module.missing_modules() == ["no_such_module_xyz (no-such-package)"]


def test_accelerator_check_reports_a_test_log_cut_off_by_its_time_limit(tmp_path):
    tests_line = load_accelerator_check()._tests_line
    log = tmp_path / "tests.log"
    assert tests_line(str(log)) == "not run"
    # What pytest -q had written when the time limit stopped it (an H200's log, shortened).
    log.write_text(
        "bringing up nodes...\n\n"
        "........................................ [ 35%]\n"
        "..........F.....s....................... [ 70%]\n"
        "...........\n"
        "=================================== FAILURES ===================================\n"
        "______________ test_meta_updates[reptile] ______________\n"
        "E           AssertionError: \n"
        "E\n"
    )
    assert tests_line(str(log)) == (
        "cut off before pytest's summary: 89 passed, 1 failed, 1 skipped (test_meta_updates[reptile])"
    )
    log.write_text("....F\n=== 4 passed, 1 failed in 3.1s ===\n")
    assert tests_line(str(log)) == "4 passed, 1 failed in 3.1s"


@pytest.mark.slow
@pytest.mark.torch
def test_bench_vs_torch_runs_every_step_on_both_sides(tmp_path):
    """scripts/bench_vs_torch.py at tiny shapes: each of the three steps, and the KD step's two
    networks apart, timed on both sides."""
    pytest.importorskip("torch")
    out = tmp_path / "bvt.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bench_vs_torch",
            "--small",
            "--repeats=1",
            "--idle_s=0",
            "--steps=synthesis,kd_step,deepinversion_step,kd_parts",
            f"--out={out}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    steps = json.loads(out.read_text())["steps"]
    assert set(steps) == {
        "synthesis",
        "kd_step",
        "deepinversion_step",
        "teacher_forward",
        "student_forward_backward",
    }
    for name, row in steps.items():
        assert row["jax"]["median_s"] > 0 and row["torch"]["median_s"] > 0
        assert name in ("teacher_forward", "student_forward_backward") or row["jax_compile_s"] > 0
        assert row["speedup_vs"]["torch"] == pytest.approx(
            row["torch"]["median_s"] / row["jax"]["median_s"]
        )


def test_bench_vs_torch_times_each_call_alone_after_the_idle_gap(monkeypatch):
    """`side_by_side` idles before each timed call and leaves the idle out of the times."""
    bench_vs_torch = load_script("bench_vs_torch")

    clock = [0.0]
    monkeypatch.setattr(bench_vs_torch.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench_vs_torch.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    starts = []

    def call(seconds):
        def fn():
            starts.append(clock[0])
            clock[0] += seconds

        return fn

    row = bench_vs_torch.side_by_side(dict(a=call(2.0), b=call(3.0)), repeats=3, idle_s=0.5)
    assert row["a"]["median_s"] == 2.0 and row["b"]["median_s"] == 3.0
    assert row["a"]["n"] == row["b"]["n"] == 3
    # The warm-up calls back to back, then every timed call 0.5 s after the previous one ended.
    assert starts == [0.0, 2.0, 5.5, 8.0, 11.5, 14.0, 17.5, 20.0]


def test_gpu_bundle_installs_only_what_is_missing(tmp_path, monkeypatch):
    """A wheel is installed only where none of its modules imports (the machine's jax stays)."""
    import zipfile

    bundle = load_script("gpu_bundle")
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    for name, module in (("numpy_fake", "numpy"), ("brand_new", "brand_new_mod")):
        with zipfile.ZipFile(wheels / f"{name}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"{name}-1.0.dist-info/top_level.txt", f"{module}\n")
            z.writestr(f"{module}/__init__.py", "")
    assert bundle.top_level_modules(str(wheels / "brand_new-1.0-py3-none-any.whl")) == [
        "brand_new_mod"
    ]
    installed = []
    monkeypatch.setattr(
        bundle.subprocess, "run", lambda cmd, check: installed.append(os.path.basename(cmd[-1]))
    )
    bundle.install(str(tmp_path / "bundle"), str(tmp_path / "site"))
    assert installed == ["brand_new-1.0-py3-none-any.whl"]  # numpy is importable: kept


@pytest.mark.slow  # two tiny runs, a timing pass, two tiny calls, the check: about 4 min on 2 cores
def test_gpu_session_script_at_runlocal_sizes(teacher_dir, tmp_path):
    """scripts/gpu_session.sh on this CPU at runlocal sizes: scripts/gpu_records.sh packs each
    record as it finishes, then the timing pass of the methods with records; NAYER's call is timed
    beside Fast-5's; the accelerator check's timings part runs.
    """
    out = tmp_path / "out"
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        GPU_RECORDS_VARIANT=":runlocal",
        GPU_RECORDS_ORDER="digits:fast2 digits:timing",
        GPU_RECORDS_ARGS=f"--config.teacher.checkpoint={teacher_dir} --config.profile_method=",
        # On CPU the repository's records share the backend: reusing them would rerun all twelve.
        GPU_RECORDS_STORED=str(tmp_path / "no_stored_records"),
        GPU_SESSION_NAYER_ARG="cifar10,METHOD,wrn40_2-wrn16_2,runlocal",
        GPU_SESSION_CHECK_ARGS="--small",
        GPU_SESSION_RECORDS_S="600",
        GPU_SESSION_NAYER_S="300",
        GPU_SESSION_CHECK_S="300",
    )
    done = subprocess.run(
        ["bash", os.path.join(REPO, "scripts", "gpu_session.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "digits fast2 exit 0" in done.stdout and "digits timing exit 0" in done.stdout
    for part in ("records", "nayer", "check"):
        assert f"gpu_session: {part} exit 0" in done.stdout, done.stdout
    nayer = json.loads((out / "nayer_timing.json").read_text())
    assert [r["variant"] for r in nayer["rows"]] == ["fast5", "nayer"]
    assert all(r["median_s"] > 0 and r["n"] == 5 for r in nayer["rows"])
    assert nayer["environment"]["platform"] == jax.default_backend()
    assert (out / "accelerator_check" / "timings.json").exists()
    import tarfile

    with tarfile.open(out / "records_bench_digits.tar.gz") as tar:
        names = tar.getnames()
    backend = jax.default_backend()
    assert f"results/bench_digits/{backend}/fast2/seed0/summary.json" in names
    assert f"results/bench_digits/{backend}/timing.json" in names
    timing_log = (out / "digits.timing.log").read_text()
    assert "Reusing the stored record" in timing_log  # fast2's, from the call before: not rerun
    timed = json.loads((out / "results" / "bench_digits" / backend / "timing.json").read_text())
    assert sorted(timed["methods"]) == ["fast2"], timed


def test_claim_workdir_refuses_moves_aside_or_adopts(tmp_path):
    """A foreign run is refused naming what differs, or moved aside when asked; an unwritable
    workdir fails naming it.
    """
    from fastdfkd_jax import checks

    config = load_config("dfkd_digits.py:fast5").to_dict()
    first = fingerprint.record(config, "T", fingerprint.code_versions(1), "cpu")
    workdir = tmp_path / "run"
    fingerprint.claim_workdir(str(workdir), first)
    (workdir / "checkpoints" / "10").mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text("{}\n")
    (workdir / "samples_0010.png").write_bytes(b"png")
    fingerprint.claim_workdir(str(workdir), first)  # the same run: resumed, nothing moved
    assert (workdir / "checkpoints").exists()
    config["kd"]["temperature"] = 1.0
    other = fingerprint.record(config, "T", fingerprint.code_versions(1), "cpu")
    with pytest.raises(checks.UserInputError, match=r"holds another run .*kd\.temperature"):
        fingerprint.claim_workdir(str(workdir), other)
    fingerprint.claim_workdir(str(workdir), other, start_afresh=True)
    moved = workdir / "superseded.1"
    assert sorted(os.listdir(moved)) == [
        "checkpoints", "fingerprint.json", "metrics.jsonl", "samples_0010.png",
    ]  # fmt: skip
    assert not (workdir / "checkpoints").exists()
    assert fingerprint.read(str(workdir))["fingerprint"] == other["fingerprint"]
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.raises(checks.UserInputError, match="cannot be written"):
        fingerprint.claim_workdir(str(blocked / "run"), first)
