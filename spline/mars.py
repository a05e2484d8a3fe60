"""``MARS``: a scikit-learn style Multivariate Adaptive Regression Splines estimator.

Follows R's ``earth`` (same defaults, GCV, minspan/endspan rules and stopping conditions) with the
forward pass of ``spline.forward`` (jitted JAX, float64) and the pruning of ``spline.backward``.
Multi-output ``y`` shares one basis; ``coef_`` is then a matrix.

Example::

    model = MARS(max_terms=21).fit(x, y)
    model.predict(x_new)
    print(model.summary())
"""

from __future__ import annotations

import time

import numpy as np
from absl import logging
from sklearn.base import BaseEstimator, RegressorMixin

from spline import backward, forward
from spline.basis import Term, basis_matrix

# earth's defaults (earth.Rd): nk = min(200, max(20, 2 p)) + 1, thresh 0.001, penalty 2 for
# degree 1 and 3 above.
NK_CAP = 200
NK_FLOOR = 20
DEFAULT_THRESH = 1e-3
PENALTY_ADDITIVE = 2.0
PENALTY_INTERACTION = 3.0
MAX_DEGREE = 2


def default_max_terms(n_features: int) -> int:
    """Earth's ``nk`` default: ``min(200, max(20, 2 p)) + 1``."""
    return min(NK_CAP, max(NK_FLOOR, 2 * n_features)) + 1


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate and convert the training data.

    Returns:
      ``(x [N, d] float64, y [N, K] float64, y_was_1d)``.

    Raises:
      ValueError: naming the problem (shape, length, NaN/inf, constant column).

    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D [n_samples, n_features], got shape {x.shape}")
    y_1d = y.ndim == 1
    if y_1d:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"y must be 1-D or 2-D [n_samples, n_outputs], got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have mismatched lengths: X has {x.shape[0]} rows, y has {y.shape[0]}"
        )
    for name, arr in (("X", x), ("y", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(arr[row, col]) else "inf"
            raise ValueError(
                f"{name} contains NaN or inf ({int(bad.sum())} values; first {kind} at row {row}, "
                f"column {col})"
            )
    const = np.flatnonzero(np.ptp(x, axis=0) == 0) if x.shape[0] else np.array([], int)
    if const.size:
        raise ValueError(f"X has constant column(s) {const.tolist()}: MARS cannot place a knot")
    return x, y, y_1d


class MARS(RegressorMixin, BaseEstimator):
    """Multivariate Adaptive Regression Splines (Friedman 1991), earth-compatible defaults.

    Args:
      max_terms: earth's ``nk``, the most terms the forward pass creates (intercept included);
        None uses ``min(200, max(20, 2 p)) + 1``.
      degree: maximum interaction degree, 1 (a continuous piecewise-linear model) or 2.
      thresh: forward-pass stopping threshold on the R^2 gain (and R^2 > 1 - thresh).
      penalty: GCV cost per knot; None gives 2 for degree 1 and 3 for degree 2.
      minspan: rows between knots; None (or 0) computes Friedman's eq. 43 per parent, as earth.
      endspan: rows outside the extreme knots; None (or 0) uses eq. 45, doubled for interactions.

    Fitted attributes:
      terms_: list of ``Term`` (variable, knot, direction, parent), intercept first.
      coef_: [n_terms] for 1-D y, [n_outputs, n_terms] for 2-D y (scikit-learn's layout).
      gcv_: GCV of the pruned model (RSS summed over outputs), as earth's ``gcv``.
      rsq_: training R^2 (pooled over outputs), as earth's ``rsq``.
      grsq_: 1 - gcv / gcv of the intercept-only model, as earth's ``grsq``.
      forward_terms_: the basis before pruning.
      n_features_in_, fit_time_, stop_reason_, minspan_, endspan_.

    """

    def __init__(
        self,
        max_terms: int | None = None,
        degree: int = 1,
        thresh: float = DEFAULT_THRESH,
        penalty: float | None = None,
        minspan: int | None = None,
        endspan: int | None = None,
    ):
        self.max_terms = max_terms
        self.degree = degree
        self.thresh = thresh
        self.penalty = penalty
        self.minspan = minspan
        self.endspan = endspan

    def _check_params(self, n_features: int) -> tuple[int, float, int | None, int | None]:
        if self.degree not in range(1, MAX_DEGREE + 1):
            raise ValueError(f"degree must be 1 or 2, got {self.degree!r}")
        max_terms = default_max_terms(n_features) if self.max_terms is None else self.max_terms
        if int(max_terms) != max_terms or max_terms < 1:
            raise ValueError(f"max_terms must be a positive integer, got {self.max_terms!r}")
        if not 0.0 <= self.thresh < 1.0:
            raise ValueError(f"thresh must be in [0, 1), got {self.thresh!r}")
        penalty = self.penalty
        if penalty is None:
            penalty = PENALTY_ADDITIVE if self.degree == 1 else PENALTY_INTERACTION
        spans = []
        for name in ("minspan", "endspan"):
            value = getattr(self, name)
            if value in (None, 0):
                spans.append(None)
            elif int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
            else:
                spans.append(int(value))
        return int(max_terms), float(penalty), spans[0], spans[1]

    def fit(self, X, y) -> MARS:
        """Fits the model.

        Args:
          X: [N, d] inputs.
          y: [N] or [N, K] targets.

        Returns:
          self.

        Raises:
          ValueError: on NaN/inf, mismatched lengths, a constant column, too few rows for one
            knot (N < 2 endspan + 1), or invalid parameters.

        """
        x, y2, y_1d = _check_xy(X, y)
        n, d = x.shape
        max_terms, penalty, minspan, endspan = self._check_params(d)
        need = 2 * (forward.default_endspan(d) if endspan is None else endspan) + 1
        if n < need:
            raise ValueError(
                f"too few rows for one knot: got {n}, need at least {need} "
                f"(2 * endspan + 1 with endspan {need // 2})"
            )
        start = time.perf_counter()
        fwd = forward.forward_pass(
            x,
            y2,
            max_terms=max_terms,
            degree=self.degree,
            thresh=self.thresh,
            penalty=penalty,
            minspan=minspan,
            endspan=endspan,
        )
        basis = basis_matrix(fwd.terms, x)
        bwd = backward.backward_pass(basis, y2, penalty)
        self.fit_time_ = time.perf_counter() - start
        self.forward_terms_ = fwd.terms
        self.terms_ = [fwd.terms[i] for i in bwd.selected]
        self._coef = bwd.coef  # [n_terms, K]
        self._y_1d = y_1d
        self.n_features_in_ = d
        self.n_outputs_ = y2.shape[1]
        self.penalty_ = penalty
        self.minspan_ = fwd.minspan
        self.endspan_ = fwd.endspan
        self.stop_reason_ = fwd.stop_reason
        self.forward_rsq_ = fwd.rsq_path[-1]
        resid = y2 - basis[:, bwd.selected] @ bwd.coef
        rss = float(np.sum(resid * resid))
        tss = float(np.sum((y2 - y2.mean(0)) ** 2))
        self.rss_ = rss
        self.rsq_ = 1.0 - rss / tss if tss > 0 else 1.0
        self.gcv_ = forward.gcv(rss, len(self.terms_), n, penalty)
        gcv_null = forward.gcv(tss, 1, n, penalty)
        self.grsq_ = 1.0 - self.gcv_ / gcv_null if gcv_null > 0 else 1.0
        logging.info(
            "MARS fit: %d -> %d terms, GCV %.6g, RSq %.4f, %.3f s (%s)",
            len(fwd.terms),
            len(self.terms_),
            self.gcv_,
            self.rsq_,
            self.fit_time_,
            fwd.stop_reason,
        )
        return self

    @property
    def coef_(self) -> np.ndarray:
        """[n_terms] for 1-D y, else [n_outputs, n_terms]."""
        self._check_fitted()
        return self._coef[:, 0] if self._y_1d else self._coef.T

    @property
    def coef_matrix_(self) -> np.ndarray:
        """[n_terms, n_outputs] coefficients whatever the shape of y."""
        self._check_fitted()
        return self._coef

    def _check_fitted(self):
        if not hasattr(self, "_coef"):
            raise ValueError("this MARS instance is not fitted yet; call fit(X, y) first")

    def transform(self, X) -> np.ndarray:
        """Evaluate the selected basis functions at ``X`` [N, d] -> [N, n_terms]."""
        self._check_fitted()
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have shape [n_samples, {self.n_features_in_}], got {np.shape(X)}"
            )
        if not np.isfinite(x).all():
            raise ValueError("X contains NaN or inf")
        return basis_matrix(self.terms_, x)

    def predict(self, X) -> np.ndarray:
        """Predictions at ``X`` [N, d]: [N] for 1-D training y, else [N, K]."""
        out = self.transform(X) @ self._coef
        return out[:, 0] if self._y_1d else out

    @property
    def max_degree_(self) -> int:
        self._check_fitted()
        return max(t.degree for t in self.terms_)

    def summary(self, feature_names: list[str] | None = None) -> str:
        """Return a readable, earth-like summary of the pruned model."""
        self._check_fitted()
        names = [t.name(feature_names) for t in self.terms_]
        width = max(len(s) for s in names)
        lines = [f"MARS(degree={self.degree}, max_terms={self.max_terms})", ""]
        header = (
            " " * width + "  " + "  ".join(f"{'coef' + str(k):>12}" for k in range(self.n_outputs_))
        )
        lines.append(header if self.n_outputs_ > 1 else " " * width + "  " + f"{'coef':>12}")
        for name, row in zip(names, self._coef, strict=True):
            lines.append(f"{name:<{width}}  " + "  ".join(f"{v:12.6g}" for v in row))
        used = sorted({v for t in self.terms_ for v in t.variables()})
        lines += [
            "",
            f"Selected {len(self.terms_)} of {len(self.forward_terms_)} terms, and {len(used)} of "
            f"{self.n_features_in_} predictors",
            f"Termination condition: {self.stop_reason_}",
            f"minspan {self.minspan_} endspan {self.endspan_}",
            f"GCV {self.gcv_:.7g}    RSS {self.rss_:.7g}    GRSq {self.grsq_:.7g}    "
            f"RSq {self.rsq_:.7g}",
        ]
        return "\n".join(lines)

    def selected_variables(self) -> list[int]:
        """Input columns used by at least one selected term, sorted."""
        self._check_fitted()
        return sorted({v for t in self.terms_ for v in t.variables()})


__all__ = ["MARS", "Term", "default_max_terms"]
