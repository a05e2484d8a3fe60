"""Spline-based initialization of fully connected layers (Mo et al., arXiv 2102.06554).

``MARS`` fits a Multivariate Adaptive Regression Splines model (earth-compatible); ``to_dense``
converts a degree-1 fit exactly into the parameters of a one-hidden-layer ReLU MLP; the helpers in
``spline.init`` turn a fit into ``(key, shape, dtype)`` initializers and ``nn.Dense`` stacks.
``spline.study`` measures whether a MARS start trains faster than random ones (its data, starts,
trainer, learning-rate choice and report live in ``spline.data``, ``spline.starts``,
``spline.trainer``, ``spline.lr_select`` and ``spline.report``; its config in
``spline.study_config``).
"""

from spline.basis import Term
from spline.convert import (
    min_widths,
    spare_terms_of,
    surrogate_coef,
    surrogate_predict,
    to_dense,
)
from spline.init import MLP, mars_bias_init, mars_dense_stack, mars_kernel_init
from spline.mars import MARS

__all__ = [
    "MARS",
    "MLP",
    "Term",
    "mars_bias_init",
    "mars_dense_stack",
    "mars_kernel_init",
    "min_widths",
    "spare_terms_of",
    "surrogate_coef",
    "surrogate_predict",
    "to_dense",
]
