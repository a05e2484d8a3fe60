r"""Fit time and GCV of spline.MARS against R's earth on Friedman #1 (docs/spline.md).

  python scripts/bench_mars.py --sizes=10000,100000 --degrees=1 [--big=1000000]

Generates Friedman #1 (d = 10, noise 1) with numpy, writes it to a CSV, fits earth (Rscript,
package r-cran-earth) and spline.MARS with the same options (nk 21), and prints a Markdown table:
fit seconds (best of --repeats, after one untimed fit that compiles), GCV, GCV ratio, test R^2 on
10^4 fresh points and whether the selected variables agree. ``--big`` adds a MARS-only run.
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from spline import MARS  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["10000", "100000"], "Training sizes.")
_DEGREES = flags.DEFINE_list("degrees", ["1"], "Interaction degrees.")
_NK = flags.DEFINE_integer("nk", 21, "earth's nk / MARS max_terms.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed fits per tool (best is reported).")
_BIG = flags.DEFINE_integer("big", 0, "If > 0, also time MARS alone on this many rows.")
_N_TEST = 10_000

R_SCRIPT = r"""
suppressMessages(library(earth))
args <- commandArgs(TRUE)
d <- as.matrix(read.csv(args[1], header=FALSE)); te <- as.matrix(read.csv(args[2], header=FALSE))
p <- ncol(d) - 1; best <- Inf
for (i in 1:as.integer(args[5])) {
  t <- system.time(m <- earth(d[,1:p], d[,p+1], degree=as.integer(args[3]),
                              nk=as.integer(args[4])))[["elapsed"]]
  best <- min(best, t)
}
pred <- predict(m, te[,1:p]); y <- te[,p+1]
r2 <- 1 - sum((y - pred)^2) / sum((y - mean(y))^2)
used <- which(evimp(m, trim=FALSE)[, "nsubsets"] > 0)
vars <- sort(as.integer(sub("V", "", rownames(evimp(m, trim=FALSE))[used])))
cat(best, m$gcv, r2, length(m$selected.terms), paste(vars - 1, collapse=","), "\n")
"""


def friedman1(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 10))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + rng.normal(size=n)
    )
    return x, y


def r2(y, pred):
    return 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


def time_mars(x, y, degree, repeats):
    MARS(max_terms=_NK.value, degree=degree).fit(x, y)  # compile
    best, model = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        model = MARS(max_terms=_NK.value, degree=degree).fit(x, y)
        best = min(best, time.perf_counter() - start)
    return best, model


def main(argv):
    del argv
    x_te, y_te = friedman1(_N_TEST, seed=99)
    print(
        "| n | degree | earth s | MARS s | earth GCV | MARS GCV | GCV ratio | earth test R2 "
        "| MARS test R2 | terms earth/MARS | same variables |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        test_csv = os.path.join(tmp, "test.csv")
        np.savetxt(test_csv, np.c_[x_te, y_te], delimiter=",")
        script = os.path.join(tmp, "earth.R")
        with open(script, "w") as f:
            f.write(R_SCRIPT)
        for n in map(int, _SIZES.value):
            x, y = friedman1(n, seed=1)
            train_csv = os.path.join(tmp, "train.csv")
            np.savetxt(train_csv, np.c_[x, y], delimiter=",")
            for degree in map(int, _DEGREES.value):
                out = subprocess.run(
                    [
                        "Rscript",
                        script,
                        train_csv,
                        test_csv,
                        str(degree),
                        str(_NK.value),
                        str(_REPEATS.value),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                e_time, e_gcv, e_r2, e_terms = float(out[0]), float(out[1]), float(out[2]), out[3]
                e_vars = out[4] if len(out) > 4 else ""
                m_time, model = time_mars(x, y, degree, _REPEATS.value)
                m_vars = ",".join(map(str, model.selected_variables()))
                print(
                    f"| {n} | {degree} | {e_time:.2f} | {m_time:.2f} | {e_gcv:.5f} "
                    f"| {model.gcv_:.5f} | {model.gcv_ / e_gcv:.4f} | {e_r2:.4f} "
                    f"| {r2(y_te, model.predict(x_te)):.4f} | {e_terms}/{len(model.terms_)} "
                    f"| {'yes' if e_vars == m_vars else f'no ({e_vars} vs {m_vars})'} |",
                    flush=True,
                )
    if _BIG.value:
        x, y = friedman1(_BIG.value, seed=1)
        m_time, model = time_mars(x, y, 1, 1)
        print(
            f"\nMARS alone, n = {_BIG.value}, degree 1: {m_time:.2f} s, GCV {model.gcv_:.5f}, "
            f"test R2 {r2(y_te, model.predict(x_te)):.4f}, {len(model.terms_)} terms"
        )


if __name__ == "__main__":
    app.run(main)
