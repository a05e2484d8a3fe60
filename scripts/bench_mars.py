r"""Fit time, memory and GCV of spline.MARS against R's earth 5.3.2, side by side (docs/mars.md).

  python scripts/bench_mars.py --out=/tmp/bench_mars.json \
      --sizes=100000,1000000 --ps=10,50 --nks=101,201 --degrees=1,2 --earth_limit=900

Data: Friedman #1 (scikit-learn's ``make_friedman1``: the first five predictors, uniform noise
predictors up to p, noise sd 1).
Both fit with earth's defaults except ``nk`` and ``thresh=0`` (earth: ``earth(x, y, degree, nk,
thresh=0)``). For each case:

* earth: timed inside R (``system.time`` around ``earth()``, data loading excluded), in a process
  of its own whose peak memory GNU time reports; a case over ``--earth_limit`` seconds is killed
  and reported as "> limit".
* ours: in a fresh Python process, so "cold" includes compiling the forward pass (with an empty
  compilation cache), "warm" is the median of ``--repeats`` further fits, and "cached" a fit
  after dropping the in-memory compilations, with JAX's persistent cache filled (what a new
  process pays for a shape it has seen; ``--nocached`` skips it). Peak memory is that process'
  maximum resident set, and on a GPU also the device's peak. A case whose estimated device memory
  exceeds ``--max_gib`` is not run (the machine is shared).
* ``--noearth`` times ours alone (a GPU machine without R).

Results go to ``--out`` (JSON, one entry per case; cases already there are skipped, so the
command resumes) and a Markdown table on stdout. The machine is shared: compare the ratios.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from sklearn.datasets import make_friedman1

from spline import forward

_SIZES = flags.DEFINE_list("sizes", ["100000", "1000000"], "Training sizes N.")
_PS = flags.DEFINE_list("ps", ["10", "50"], "Numbers of predictors p.")
_NKS = flags.DEFINE_list("nks", ["101", "201"], "earth's nk (MARS max_terms).")
_DEGREES = flags.DEFINE_list("degrees", ["1", "2"], "Interaction degrees.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Warm fits of ours (the median is reported).")
_CACHED = flags.DEFINE_bool(
    "cached", True, "Also time a fit from the persistent cache (--nocached: the largest sizes)."
)
_EARTH_LIMIT = flags.DEFINE_integer("earth_limit", 900, "Seconds before an earth fit is killed.")
_EARTH = flags.DEFINE_bool(
    "earth", True, "Fit earth too; --noearth times ours alone (a GPU machine without R)."
)
_OURS_LIMIT = flags.DEFINE_integer("ours_limit", 3600, "Seconds before our case is killed.")
_OUT = flags.DEFINE_string("out", "bench_mars.json", "Results (JSON), resumable.")
_MAX_GIB = flags.DEFINE_float(
    "max_gib", 8.0, "Skip our fit when forward.estimate_device_bytes exceeds this (shared machine)."
)
_CHILD = flags.DEFINE_string("child", "", "Internal: run our side of one case 'n,p,nk,degree'.")
_SEED = 1


def friedman1(n: int, p: int, seed: int = _SEED) -> tuple[np.ndarray, np.ndarray]:
    """Friedman #1 (scikit-learn's make_friedman1): y from x0..x4, x5.. are noise; [N, p], [N]."""
    return make_friedman1(n, p, noise=1.0, random_state=seed)


def run_ours(n: int, p: int, nk: int, degree: int, repeats: int, cached: bool = True) -> dict:
    """Our side of one case, in this (fresh) process."""
    import jax

    cache = tempfile.mkdtemp(prefix="mars_cache_")
    jax.config.update("jax_compilation_cache_dir", cache)
    from spline import MARS

    x, y = friedman1(n, p)

    def fit():
        start = time.perf_counter()
        model = MARS(max_terms=nk, degree=degree, thresh=0.0).fit(x, y)
        return time.perf_counter() - start, model

    cold, model = fit()
    warm = [fit()[0] for _ in range(repeats)]
    cached_s = None
    if cached:
        jax.clear_caches()
        cached_s, _ = fit()
    device = jax.devices()[0]
    peak_bytes = (device.memory_stats() or {}).get("peak_bytes_in_use")  # no stats on CPU
    return {
        "device": device.device_kind,
        "device_peak_mib": None if peak_bytes is None else peak_bytes / 2**20,
        "cold_s": cold,
        "warm_s": statistics.median(warm),
        "cached_s": cached_s,
        "gcv": model.gcv_,
        "terms": len(model.terms_),
        "forward_terms": len(model.forward_terms_),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_earth(n: int, p: int, nk: int, degree: int, limit: int) -> dict:
    """The earth side of one case; ``{"seconds": None, "not_run": True}`` under --noearth."""
    if not _EARTH.value:
        return {"seconds": None, "not_run": True}
    from spline import earth_r

    x, y = friedman1(n, p)
    try:
        fit = earth_r.fit(x, y, degree=degree, nk=nk, thresh=0.0, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "limit": limit}
    return {
        "seconds": fit.seconds[0],
        "gcv": fit.gcv,
        "terms": len(fit.selected),
        "forward_terms": len(fit.dirs),
        "peak_mib": fit.peak_mib,
    }


def _fmt(v, spec=".2f", missing="-"):
    return missing if v is None else format(v, spec)


def table(results: list[dict]) -> str:
    lines = [
        "| N | p | nk | degree | earth s | ours warm s | speedup | ours cold s | ours cached s "
        "| earth GCV | ours GCV | GCV rel. diff | terms earth/ours | earth MiB | ours MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e, o = r["earth"], r["ours"]
        if e.get("not_run"):
            e_seconds = "not run"
        elif e["seconds"] is None:
            e_seconds = f"> {e['limit']}"
        else:
            e_seconds = f"{e['seconds']:.2f}"
        if "skipped" in o:
            lines.append(
                f"| {r['n']} | {r['p']} | {r['nk']} | {r['degree']} | {e_seconds} "
                f"| not run: {o['skipped']} | | | | | | | | {_fmt(e.get('peak_mib'), '.0f')} | |"
            )
            continue
        device_mib = (
            f" ({o['device']}: {o['device_peak_mib']:.0f})" if o.get("device_peak_mib") else ""
        )
        if e.get("not_run"):
            speed, egcv, diff = "-", "-", "-"
        elif e["seconds"] is None:
            speed, egcv, diff = f"> {e['limit'] / o['warm_s']:.0f}x", "-", "-"
        else:
            speed = f"{e['seconds'] / o['warm_s']:.1f}x"
            egcv = f"{e['gcv']:.6g}"
            diff = f"{abs(o['gcv'] - e['gcv']) / e['gcv']:.1e}"
        lines.append(
            f"| {r['n']} | {r['p']} | {r['nk']} | {r['degree']} | {e_seconds} | {o['warm_s']:.2f} "
            f"| {speed} | {o['cold_s']:.2f} | {_fmt(o['cached_s'])} | {egcv} | {o['gcv']:.6g} "
            f"| {diff} | {e.get('terms', '-')}/{o['terms']} | {_fmt(e.get('peak_mib'), '.0f')} "
            f"| {o['peak_mib']:.0f}{device_mib} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    if _CHILD.value:
        n, p, nk, degree = map(int, _CHILD.value.split(","))
        print(json.dumps(run_ours(n, p, nk, degree, _REPEATS.value, _CACHED.value)))
        return
    results = []
    if os.path.exists(_OUT.value):
        with open(_OUT.value) as f:
            results = json.load(f)
    done = {(r["n"], r["p"], r["nk"], r["degree"]) for r in results}
    for n in map(int, _SIZES.value):
        for p in map(int, _PS.value):
            for nk in map(int, _NKS.value):
                for degree in map(int, _DEGREES.value):
                    if (n, p, nk, degree) in done:
                        continue
                    need = forward.estimate_device_bytes(n, p, 1, nk, degree) / 2**30
                    if need > _MAX_GIB.value:
                        ours = {"skipped": f"needs ~{need:.0f} GiB"}
                        earth = run_earth(n, p, nk, degree, _EARTH_LIMIT.value)
                        results.append(
                            {
                                "n": n,
                                "p": p,
                                "nk": nk,
                                "degree": degree,
                                "ours": ours,
                                "earth": earth,
                            }
                        )
                        with open(_OUT.value, "w") as f:
                            json.dump(results, f, indent=1)
                        continue
                    child = subprocess.run(
                        [
                            sys.executable,
                            os.path.abspath(__file__),
                            f"--child={n},{p},{nk},{degree}",
                            f"--repeats={_REPEATS.value}",
                            f"--cached={_CACHED.value}",
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=_OURS_LIMIT.value,
                    )
                    ours = json.loads(child.stdout.strip().splitlines()[-1])
                    earth = run_earth(n, p, nk, degree, _EARTH_LIMIT.value)
                    results.append(
                        {"n": n, "p": p, "nk": nk, "degree": degree, "ours": ours, "earth": earth}
                    )
                    with open(_OUT.value, "w") as f:
                        json.dump(results, f, indent=1)
                    print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))


if __name__ == "__main__":
    app.run(main)
