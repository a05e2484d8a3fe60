"""Standardization of the study's splits with training statistics (inputs; regression targets).

Regression targets are standardized too, so losses are MSE in units of the training target's
variance; classification keeps integer labels (losses are cross-entropy).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spline.data import Data

INPUT_SCALES = ("column", "global")


@dataclasses.dataclass
class Prepared:
    """Standardized float32 arrays for training and the statistics used.

    Attributes:
      z_train, z_val, z_test: [N, d] standardized inputs.
      t_train, t_val, t_test: [N, 1] standardized regression targets, or [N] int32 labels.
      x_mean, x_std: [d] the input statistics (float64), for folding into a first layer.
      outputs: network outputs (1 for regression, the number of classes otherwise).
      classification: whether the targets are labels.

    """

    z_train: np.ndarray
    t_train: np.ndarray
    z_val: np.ndarray
    t_val: np.ndarray
    z_test: np.ndarray
    t_test: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    outputs: int
    classification: bool


def prepare(data: Data, input_scale: str = "column") -> Prepared:
    """Standardize inputs (and regression targets) with training statistics.

    Args:
      data: the splits.
      input_scale: ``"column"`` divides each centred input by its own training standard deviation;
        ``"global"`` by one standard deviation over all training inputs (for pixels on a common
        scale: a pixel almost always 0 in training has a tiny std, and a test image that sets it
        would give an input of tens of standard deviations).

    Returns:
      The standardized arrays.

    """
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"unknown input_scale {input_scale!r}; choose from {INPUT_SCALES}")
    mean = data.x_train.mean(0)
    if input_scale == "column":
        std = data.x_train.std(0)
    else:
        std = np.full(data.x_train.shape[1], (data.x_train - mean).std())

    def inputs(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    if data.classification:

        def targets(y: np.ndarray) -> np.ndarray:
            return y.astype(np.int32)

        outputs = data.num_classes
    else:
        y_mean, y_std = data.y_train.mean(), data.y_train.std()

        def targets(y: np.ndarray) -> np.ndarray:
            return ((y - y_mean) / y_std)[:, None].astype(np.float32)

        outputs = 1
    return Prepared(
        inputs(data.x_train),
        targets(data.y_train),
        inputs(data.x_val),
        targets(data.y_val),
        inputs(data.x_test),
        targets(data.y_test),
        mean,
        std,
        outputs,
        data.classification,
    )
