"""Run R's ``earth`` (the reference MARS) on numpy data, for parity tests and benchmarks.

Needs ``Rscript`` with the earth package (Debian: ``apt-get install r-cran-earth``). Data go to R
as raw little-endian float64 files (exact, and fast for 1e6 rows); results come back the same
way. ``available()`` says whether earth can be run here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np

from spline.basis import LINEAR, Term

# GNU time, for the R process' peak memory (optional).
TIME_BIN = "/usr/bin/time"

# Reads the data, fits earth ``repeats`` times (timing each fit inside R), writes the last model.
_R_SCRIPT = r"""
suppressMessages(library(earth))
a <- commandArgs(TRUE); d <- a[1]
rd <- function(f, n) readBin(file.path(d, f), "double", n, endian = "little")
dims <- as.integer(strsplit(a[2], ",")[[1]]); n <- dims[1]; p <- dims[2]; k <- dims[3]
x <- matrix(rd("x.bin", n * p), n, p); colnames(x) <- paste0("x", seq_len(p) - 1)
y <- matrix(rd("y.bin", n * k), n, k); colnames(y) <- paste0("y", seq_len(k))
w <- if (file.exists(file.path(d, "w.bin"))) rd("w.bin", n) else NULL
o <- as.numeric(strsplit(a[3], ",")[[1]])
pen <- if (is.na(o[4])) (if (o[1] > 1) 3 else 2) else o[4]  # earth's default penalty
secs <- c()
for (i in seq_len(max(1, o[9]))) {
  t <- system.time(m <- earth(x, y, weights = w, degree = o[1], nk = o[2], thresh = o[3],
                              penalty = pen, minspan = o[5], endspan = o[6], fast.k = o[7],
                              fast.beta = o[8]))[["elapsed"]]
  secs <- c(secs, t)
}
wb <- function(v, f) writeBin(as.double(v), file.path(d, f), endian = "little")
wb(m$dirs, "dirs.bin"); wb(m$cuts, "cuts.bin"); wb(m$selected.terms, "selected.bin")
wb(m$coefficients, "coef.bin"); wb(secs, "secs.bin")
wb(c(nrow(m$dirs), length(m$selected.terms), m$gcv, m$rss, m$rsq, m$grsq, m$termcond),
   "scalars.bin")
"""


@dataclasses.dataclass
class EarthFit:
    """An earth model: ``dirs``/``cuts`` [n_terms, p] (every forward-pass term kept by earth),
    ``selected`` 0-based term indices, ``coef`` [n_selected, K], ``gcv``, ``rss``, ``rsq``,
    ``grsq``, ``termcond``, the fit times in seconds (``seconds``, one per repeat) and the R
    process' peak resident memory in MiB (``peak_mib``; None without ``/usr/bin/time``).
    """

    dirs: np.ndarray
    cuts: np.ndarray
    selected: np.ndarray
    coef: np.ndarray
    gcv: float
    rss: float
    rsq: float
    grsq: float
    termcond: int
    seconds: list[float]
    peak_mib: float | None = None


@functools.cache
def available() -> bool:
    """Whether ``Rscript`` runs and loads earth."""
    if shutil.which("Rscript") is None:
        return False
    done = subprocess.run(
        ["Rscript", "-e", "suppressMessages(library(earth))"], capture_output=True, check=False
    )
    return done.returncode == 0


def fit(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    degree: int = 1,
    nk: int | None = None,
    thresh: float = 0.001,
    penalty: float | None = None,
    minspan: int = 0,
    endspan: int = 0,
    fast_k: int = 20,
    fast_beta: float = 1.0,
    repeats: int = 1,
    timeout: float | None = None,
) -> EarthFit:
    """Fits ``earth(x, y, weights, ...)`` in R; arguments as earth's (None: earth's default).

    Raises:
      subprocess.TimeoutExpired: past ``timeout`` seconds.
      RuntimeError: when R fails (its stderr in the message).

    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)
    n, p = x.shape
    k = y.shape[1]
    if nk is None:
        nk = min(200, max(20, 2 * p)) + 1
    opts = [
        degree,
        nk,
        thresh,
        np.nan if penalty is None else penalty,
        minspan,
        endspan,
        fast_k,
        fast_beta,
        repeats,
    ]
    with tempfile.TemporaryDirectory() as d:
        np.asfortranarray(x).T.astype("<f8").tofile(os.path.join(d, "x.bin"))
        np.asfortranarray(y).T.astype("<f8").tofile(os.path.join(d, "y.bin"))
        if weights is not None:
            np.asarray(weights, "<f8").tofile(os.path.join(d, "w.bin"))
        script = os.path.join(d, "fit.R")
        with open(script, "w") as f:
            f.write(_R_SCRIPT)
        timer = [TIME_BIN, "-f", "peak_kib=%M"] if os.path.exists(TIME_BIN) else []
        done = subprocess.run(
            timer + ["Rscript", script, d, f"{n},{p},{k}", ",".join(repr(float(v)) for v in opts)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"earth failed: {done.stderr.strip()}")
        peak = [line for line in done.stderr.splitlines() if line.startswith("peak_kib=")]

        def rd(name):
            return np.fromfile(os.path.join(d, name), dtype="<f8")

        sc = rd("scalars.bin")
        n_terms, n_sel = int(sc[0]), int(sc[1])
        return EarthFit(
            dirs=rd("dirs.bin").reshape(p, n_terms).T.astype(int),
            cuts=rd("cuts.bin").reshape(p, n_terms).T,
            selected=rd("selected.bin").astype(int) - 1,
            coef=rd("coef.bin").reshape(k, n_sel).T,
            gcv=float(sc[2]),
            rss=float(sc[3]),
            rsq=float(sc[4]),
            grsq=float(sc[5]),
            termcond=int(sc[6]),
            seconds=list(rd("secs.bin")),
            peak_mib=int(peak[-1].split("=")[1]) / 1024 if peak else None,
        )


def term_key(term: Term) -> frozenset:
    """A term as earth describes it: the set of its factors ``(predictor, dir, cut)``.

    ``dir`` is earth's code (1, -1, or 2 for a linear factor, whose cut earth does not use).
    """
    return frozenset(
        (f.variable, 2, 0.0) if f.direction == LINEAR else (f.variable, f.direction, f.knot)
        for f in term.factors()
    )


def earth_term_keys(fit_: EarthFit) -> list[frozenset]:
    """``term_key`` of every earth term, in earth's order."""
    keys = []
    for dirs, cuts in zip(fit_.dirs, fit_.cuts, strict=True):
        keys.append(
            frozenset(
                (j, 2, 0.0) if d == 2 else (j, int(d), float(cuts[j]))
                for j, d in enumerate(dirs)
                if d != 0
            )
        )
    return keys
