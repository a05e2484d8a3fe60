"""``MARS``: Multivariate Adaptive Regression Splines, earth 5.3.2's model, scikit-learn style.

With default arguments a fit is R's ``earth(x, y)``: the same forward pass (``spline.forward``:
knot grid, collinearity tolerance, linear terms, Fast MARS queue, stopping rules), the same
pruning (``spline.backward``) and the same defaults, hence the same terms, knots, coefficients and
GCV. Multi-output ``y`` shares one basis; ``coef_`` is then a matrix. Case weights follow earth's
weighted search (``sample_weight``).

Example::

    model = MARS(max_terms=21).fit(x, y)
    model.predict(x_new)
    print(model.summary())
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from absl import logging
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from spline import backward, forward, forward_state
from spline.basis import INTERCEPT, Term, basis_matrix

# The forward pass's direction code of a linear term.
LINEAR = forward_state.DIR_LINEAR
# earth's defaults (earth.Rd): nk = min(200, max(20, 2 p)) + 1, thresh 0.001, penalty 2 for
# degree 1 and 3 above, fast.k 20, fast.beta 1.
NK_CAP = 200
NK_FLOOR = 20
DEFAULT_THRESH = 1e-3
PENALTY_ADDITIVE = 2.0
PENALTY_INTERACTION = 3.0
DEFAULT_FAST_K = 20
DEFAULT_FAST_BETA = 1.0
# The ranges earth accepts (earth.fit.R and earth.c's CheckForwardPassArgs).
MAX_DEGREE = 10
MAX_NK = 1000
MAX_PENALTY = 1000.0
MAX_FAST_BETA = 1000.0
FREE_PENALTY = -1.0  # earth: terms and knots cost nothing in the GCV


def default_max_terms(n_features: int) -> int:
    """Earth's ``nk`` default: ``min(200, max(20, 2 p)) + 1``."""
    return min(NK_CAP, max(NK_FLOOR, 2 * n_features)) + 1


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad.reshape(arr.shape[0], -1))[0]
        kind = "NaN" if np.isnan(arr.reshape(arr.shape[0], -1)[row, col]) else "inf"
        raise ValueError(
            f"{name} contains NaN or inf ({int(bad.sum())} values; first {kind} at row {row}, "
            f"column {col})"
        )


class MARS(RegressorMixin, TransformerMixin, BaseEstimator):
    """Multivariate Adaptive Regression Splines (Friedman 1991) as R's earth 5.3.2 fits them.

    Args:
      max_terms: earth's ``nk``: term slots of the forward pass, intercept included (a step takes
        two slots even when it adds one term); None uses ``min(200, max(20, 2 p)) + 1``.
      degree: maximum interaction degree (1 to 10).
      thresh: forward-pass threshold on the RSq gain (and RSq > 1 - thresh); 0 turns the RSq and
        GRSq checks off.
      penalty: GCV cost per knot; None gives 2 for degree 1 and 3 above; -1 makes terms free.
      minspan: rows between knots: None or 0 for eq. 43 per parent, > 0 fixed, < 0 the number
        of knots.
      endspan: rows below the lowest knot: None or 0 for eq. 45 (tripled for interactions).
      fast_k: parents scored per step (earth's fast.k; <= 0 scores all).
      fast_beta: ageing of the parent queue (earth's fast.beta).
      collinearity_tol: opt-in: reject a new hinge whose residual after the basis keeps less than
        this fraction of its centred sum of squares. None is earth's rule (0.01 while the new
        column's index is below 15, then 1e-5).

    Fitted attributes:
      terms_: selected ``Term`` list, intercept first. forward_terms_: the forward pass' terms
        (earth's ``dirs``/``cuts`` rows after dropping dependent ones).
      coef_: [n_terms] for 1-D y, [n_outputs, n_terms] for 2-D y (scikit-learn's layout).
      gcv_, rss_, rsq_, grsq_: earth's ``gcv``, ``rss``, ``rsq``, ``grsq`` (pooled over outputs,
        weighted when weights are used). gcv_path_, rss_path_: per subset size.
      stop_reason_, termination_: why the forward pass stopped (earth's ``termcond``).
      ignored_features_: constant columns. n_features_in_, n_outputs_, fit_time_, minspan_,
      endspan_, penalty_, weighted_.

    """

    def __init__(
        self,
        max_terms: int | None = None,
        degree: int = 1,
        thresh: float = DEFAULT_THRESH,
        penalty: float | None = None,
        minspan: int | None = None,
        endspan: int | None = None,
        fast_k: int = DEFAULT_FAST_K,
        fast_beta: float = DEFAULT_FAST_BETA,
        collinearity_tol: float | None = None,
    ):
        self.max_terms = max_terms
        self.degree = degree
        self.thresh = thresh
        self.penalty = penalty
        self.minspan = minspan
        self.endspan = endspan
        self.fast_k = fast_k
        self.fast_beta = fast_beta
        self.collinearity_tol = collinearity_tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _checked_params(self, n_rows: int, n_features: int) -> forward.Options:
        """Earth's argument ranges; returns the forward pass' options."""

        def integer(name, value, low=None, high=None):
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
            return int(value)

        degree = integer("degree", self.degree, 1, MAX_DEGREE)
        nk = default_max_terms(n_features) if self.max_terms is None else self.max_terms
        nk = integer("max_terms", nk, 1, MAX_NK)
        if not 0.0 <= self.thresh < 1.0:
            raise ValueError(f"thresh must be in [0, 1), got {self.thresh!r}")
        penalty = self.penalty
        if penalty is None:
            penalty = PENALTY_ADDITIVE if degree == 1 else PENALTY_INTERACTION
        if penalty != FREE_PENALTY and not 0.0 <= penalty <= MAX_PENALTY:
            raise ValueError(f"penalty must be -1 or in [0, {MAX_PENALTY:g}], got {penalty!r}")
        minspan = integer("minspan", self.minspan or 0, None, n_rows)
        endspan = integer("endspan", self.endspan or 0, 0, n_rows)
        fast_k = integer("fast_k", self.fast_k)
        if not 0.0 <= self.fast_beta <= MAX_FAST_BETA:
            raise ValueError(f"fast_beta must be in [0, {MAX_FAST_BETA:g}], got {self.fast_beta!r}")
        tol = self.collinearity_tol
        if tol is not None and not 0.0 < tol < 1.0:
            raise ValueError(f"collinearity_tol must be None or in (0, 1), got {tol!r}")
        return forward.Options(
            nk=nk,
            degree=degree,
            thresh=float(self.thresh),
            penalty=float(penalty),
            minspan=minspan,
            endspan=endspan,
            fast_k=fast_k,
            fast_beta=float(self.fast_beta),
            tol=0.0 if tol is None else float(tol),
        )

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> MARS:
        """Fits the model.

        Args:
          X: [N, d] inputs (N >= 2).
          y: [N] or [N, K] targets.
          sample_weight: [N] non-negative case weights (earth's ``weights``: all equal means
            unweighted; weights below mean / 1e8 are raised to it).

        Returns:
          self.

        Raises:
          ValueError: on NaN/inf, mismatched lengths, fewer than 2 rows, bad weights, or a
            parameter outside earth's range (each message names the value).

        """
        x, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            y_numeric=True,
            ensure_all_finite=False,
            ensure_min_samples=2,
            dtype=np.float64,
        )
        _check_finite("X", x)
        _check_finite("y", y)
        y_1d = y.ndim == 1
        y2 = y[:, None] if y_1d else y
        n, d = x.shape
        options = self._checked_params(n, d)
        weights = None
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, x, ensure_non_negative=True)
            weights = forward.earth_weights(sample_weight, n)
        constant = np.flatnonzero(np.ptp(x, axis=0) == 0)
        if constant.size:
            warnings.warn(
                f"MARS ignores constant column(s) {constant.tolist()} of X: no knot or linear "
                "term can use them (as in earth)",
                UserWarning,
                stacklevel=2,
            )
        start = time.perf_counter()
        fwd = forward.forward_pass(x, y2, weights, options)
        slots = [fwd.slots[i] for i in backward.independent(fwd.r[:, fwd.slots])]
        names = _terms(fwd, slots)
        bwd = backward.backward_pass(fwd.r[:, slots], fwd.z, fwd.rss_out, n, options.penalty)
        self.fit_time_ = time.perf_counter() - start
        self.forward_terms_ = names
        self.terms_ = [names[i] for i in bwd.selected]
        self._coef = bwd.coef  # [n_terms, K]
        self._y_1d = y_1d
        self.n_outputs_ = y2.shape[1]
        self.penalty_ = options.penalty
        self.minspan_ = fwd.minspan
        self.endspan_ = fwd.endspan
        self.termination_ = fwd.termination
        self.stop_reason_ = forward_state.TERMINATION[fwd.termination]
        self.forward_rsq_ = fwd.rsq
        self.weighted_ = fwd.weighted
        self.ignored_features_ = constant.tolist()
        self.rss_path_ = bwd.rss_path
        self.gcv_path_ = bwd.gcv_path
        size = len(self.terms_)
        self.rss_ = bwd.rss_path[size - 1]
        self.gcv_ = bwd.gcv_path[size - 1]
        rss_null, gcv_null = bwd.rss_path[0], bwd.gcv_path[0]
        self.rsq_ = 1.0 - self.rss_ / rss_null if rss_null > 0 else 1.0
        self.grsq_ = 1.0 - self.gcv_ / gcv_null if gcv_null > 0 else 1.0
        logging.info(
            "MARS fit: %d -> %d terms, GCV %.6g, RSq %.4f, %.3f s (%s)",
            len(names),
            size,
            self.gcv_,
            self.rsq_,
            self.fit_time_,
            self.stop_reason_,
        )
        return self

    @property
    def coef_(self) -> np.ndarray:
        """[n_terms] for 1-D y, else [n_outputs, n_terms]."""
        check_is_fitted(self, "terms_")
        return self._coef[:, 0] if self._y_1d else self._coef.T

    @property
    def coef_matrix_(self) -> np.ndarray:
        """[n_terms, n_outputs] coefficients whatever the shape of y."""
        check_is_fitted(self, "terms_")
        return self._coef

    def _check_fitted(self) -> None:
        """Raises ``NotFittedError`` (a ``ValueError``) before ``fit``."""
        check_is_fitted(self, "terms_")

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Evaluate the selected basis functions at ``X`` [N, d] -> [N, n_terms]."""
        check_is_fitted(self, "terms_")
        x = validate_data(self, X, reset=False, ensure_all_finite=False, dtype=np.float64)
        _check_finite("X", x)
        return basis_matrix(self.terms_, x)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Names of the selected basis functions (``transform``'s columns), earth's style."""
        check_is_fitted(self, "terms_")
        if input_features is None:
            input_features = getattr(self, "feature_names_in_", None)
        names = None if input_features is None else [str(f) for f in input_features]
        return np.asarray([t.name(names) for t in self.terms_], dtype=object)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predictions at ``X`` [N, d]: [N] for 1-D training y, else [N, K]."""
        out = self.transform(X) @ self._coef
        return out[:, 0] if self._y_1d else out

    @property
    def max_degree_(self) -> int:
        check_is_fitted(self, "terms_")
        return max(t.degree for t in self.terms_)

    def summary(self, feature_names: list[str] | None = None) -> str:
        """Return a readable, earth-like summary of the pruned model."""
        check_is_fitted(self, "terms_")
        names = [t.name(feature_names) for t in self.terms_]
        width = max(len(s) for s in names)
        lines = [f"MARS(degree={self.degree}, max_terms={self.max_terms})", ""]
        header = (
            " " * width + "  " + "  ".join(f"{'coef' + str(k):>12}" for k in range(self.n_outputs_))
        )
        lines.append(header if self.n_outputs_ > 1 else " " * width + "  " + f"{'coef':>12}")
        for name, row in zip(names, self._coef, strict=True):
            lines.append(f"{name:<{width}}  " + "  ".join(f"{v:12.6g}" for v in row))
        used = self.selected_variables()
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
        check_is_fitted(self, "terms_")
        return sorted({v for t in self.terms_ for v in t.variables()})


def _terms(fwd: forward.ForwardResult, slots: list[int]) -> list[Term]:
    """``Term`` objects of the given slots of the forward pass, in slot order."""
    made: dict[int, Term] = {0: INTERCEPT}

    def make(slot: int) -> Term:
        if slot not in made:
            direction = int(fwd.dirn[slot])
            made[slot] = Term(
                variable=int(fwd.var[slot]),
                knot=float(fwd.cut[slot])
                if direction != forward_state.DIR_LINEAR
                else float("nan"),
                direction=0 if direction == forward_state.DIR_LINEAR else direction,
                parent=make(int(fwd.parent[slot])),
            )
        return made[slot]

    return [make(s) for s in slots]


__all__ = ["MARS", "Term", "default_max_terms"]
