"""scripts/bench_mars.py without R (--noearth, as on a GPU machine): our side alone, resumable."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

BENCH = os.path.join(REPO, "scripts", "bench_mars.py")


def run_bench(out, *extra):
    return subprocess.run(
        [sys.executable, BENCH, "--noearth", f"--out={out}", "--sizes=2000", "--ps=5"]
        + ["--nks=11", "--degrees=1", "--repeats=1", *extra],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def test_ours_alone_then_resumed(tmp_path):
    out = tmp_path / "bench.json"
    first = run_bench(out, "--nocached")
    (case,) = json.loads(out.read_text())
    assert (case["n"], case["p"], case["nk"], case["degree"]) == (2000, 5, 11, 1)
    assert case["earth"] == {"seconds": None, "not_run": True}
    ours = case["ours"]
    assert ours["cold_s"] > 0 and ours["warm_s"] > 0 and ours["cached_s"] is None
    assert 1 < ours["terms"] <= ours["forward_terms"] <= 11
    assert ours["gcv"] > 0 and ours["device"] == "cpu"
    assert ours["device_peak_mib"] is None  # a CPU reports no device memory
    row = [line for line in first.stdout.splitlines() if line.startswith("| 2000 ")][-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4:7] == ["not run", f"{ours['warm_s']:.2f}", "-"]  # earth, warm, speed-up
    assert cells[8] == "-"  # no cached fit
    # A second run finds the case done and measures nothing again.
    run_bench(out, "--nocached")
    assert json.loads(out.read_text()) == [case]
