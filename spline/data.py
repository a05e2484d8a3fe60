"""Data sets of the spline study: a registry of loaders and the train / validation / test split.

Every loader returns all rows ``(x [N, d] float64, y [N])``; ``load_data`` splits them with a fixed
seed into a test split (``test_fraction`` of all rows) and a validation split (``val_fraction`` of
the remaining rows), drops columns constant on the training rows (MARS refuses them; they carry
nothing) and returns a ``Data``. The test split is only ever reported on, never used for a choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

# sklearn.datasets.make_friedman1 draws its inputs and noise from this seed: the same rows for every
# split and run.
FRIEDMAN1_DATA_SEED = 0


@dataclasses.dataclass
class Data:
    """Train / validation / test rows as float64 numpy arrays.

    Attributes:
      x_train: [N, d]; y_train: [N] float targets or int labels; likewise validation and test.
      classification: whether y are class labels.
      num_classes: number of classes (0 for regression).

    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classification: bool
    num_classes: int = 0


def _load_diabetes(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    return load_diabetes(return_X_y=True)


def _load_friedman1(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_friedman1

    if cfg.n_samples < 1 or cfg.n_features < 5:
        raise ValueError(
            "friedman1 needs n_samples >= 1 and n_features >= 5, got "
            f"n_samples={cfg.n_samples}, n_features={cfg.n_features}"
        )
    return make_friedman1(
        n_samples=cfg.n_samples,
        n_features=cfg.n_features,
        noise=cfg.noise,
        random_state=FRIEDMAN1_DATA_SEED,
    )


def _load_digits(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float64), y.astype(np.int64)


def wine_quality_arrays(data_source) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, 11] and quality [N] from a TFDS ``wine_quality`` data source split."""
    rows = [data_source[i] for i in range(len(data_source))]
    names = sorted(rows[0]["features"].keys())
    x = np.array([[float(r["features"][k]) for k in names] for r in rows], dtype=np.float64)
    y = np.array([float(r["quality"]) for r in rows], dtype=np.float64)
    return x, y


def _load_wine_quality(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    # TFDS without TensorFlow: data_source reads prepared array_record files. Preparing needs a
    # download (users online: tfds.builder("wine_quality_np/white").download_and_prepare(
    # file_format="array_record")).
    import tensorflow_datasets as tfds

    from spline import wine_quality  # noqa: F401  (registers the TensorFlow-free builder)

    source = tfds.data_source(cfg.tfds_name, split="train", data_dir=cfg.data_dir or None)
    return wine_quality_arrays(source)


# name -> (loader of all rows, whether y are class labels).
DATASETS: dict[str, tuple[Callable[[ml_collections.ConfigDict], tuple], bool]] = {
    "diabetes": (_load_diabetes, False),
    "friedman1": (_load_friedman1, False),
    "digits": (_load_digits, True),
    "wine_quality": (_load_wine_quality, False),
}


def check_name(name: str) -> None:
    """Raise ValueError naming ``name`` and the choices if it is not in ``DATASETS``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")


def _fraction(name: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    classification: bool,
) -> Data:
    """Shuffle once with ``seed``; test rows first, then validation rows, the rest for training.

    Args:
      x: [N, d] inputs; y: [N] targets or labels.
      test_fraction: share of all rows held out for the test split.
      val_fraction: share of the remaining rows held out for validation.

    Returns:
      ``Data`` with columns constant on the training rows dropped.

    """
    _fraction("test_fraction", test_fraction)
    _fraction("val_fraction", val_fraction)
    idx = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * (len(x) - n_test)))
    te, va, tr = idx[:n_test], idx[n_test : n_test + n_val], idx[n_test + n_val :]
    keep = np.ptp(x[tr], axis=0) > 0
    x = x[:, keep]
    num_classes = int(y.max()) + 1 if classification else 0
    return Data(x[tr], y[tr], x[va], y[va], x[te], y[te], classification, num_classes)


def load_data(cfg: ml_collections.ConfigDict) -> Data:
    """Load ``cfg.name`` from ``DATASETS`` and split it (``cfg.test_fraction``, ``val_fraction``,
    ``split_seed``); raises ValueError naming an unknown name.
    """
    check_name(cfg.name)
    loader, classification = DATASETS[cfg.name]
    x, y = loader(cfg)
    return split(
        np.asarray(x, np.float64),
        np.asarray(y),
        test_fraction=cfg.test_fraction,
        val_fraction=cfg.val_fraction,
        seed=cfg.split_seed,
        classification=classification,
    )
