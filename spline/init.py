"""Flax glue: ``(key, shape, dtype)`` initializers and an ``nn.Dense`` stack from a MARS fit.

``to_dense`` gives the parameters; this module hands them to Flax through the initializer protocol
so a MARS-initialized MLP can serve as the fully connected head of any Linen model::

    head = mars_dense_stack(model, widths=[64], key=jax.random.key(0),
                            input_mean=mu, input_std=sd)
    variables = head.init(jax.random.key(1), z)   # head.apply(variables, z) == model.predict(x)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from spline.convert import to_dense
from spline.mars import MARS

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


class MLP(nn.Module):
    """Dense layers with ReLU between them (none after the last).

    Attributes:
      features: output width of each layer, the last being the number of outputs.
      kernel_inits: one initializer per layer, or None for Flax's default.
      bias_inits: one initializer per layer, or None for zeros.

    """

    features: Sequence[int]
    kernel_inits: Sequence[Initializer] | None = None
    bias_inits: Sequence[Initializer] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Map ``x`` [batch, d] to [batch, features[-1]]."""
        for i, width in enumerate(self.features):
            kwargs = {}
            if self.kernel_inits is not None:
                kwargs["kernel_init"] = self.kernel_inits[i]
            if self.bias_inits is not None:
                kwargs["bias_init"] = self.bias_inits[i]
            x = nn.Dense(width, name=f"Dense_{i}", **kwargs)(x)
            if i < len(self.features) - 1:
                x = nn.relu(x)
        return x


def _initializer(model: MARS, layer: int, name: str, conversion: dict) -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        # The key only draws the extra (widening) units; the exact part does not depend on it.
        params = to_dense(model, key=key, dtype=dtype, **conversion)
        value = params[f"Dense_{layer}"][name]
        if tuple(shape) != tuple(value.shape):
            raise ValueError(
                f"MARS initializer for Dense_{layer}.{name} produces shape {value.shape}, "
                f"but the layer asks for {tuple(shape)}"
            )
        return value

    return init


def mars_kernel_init(model: MARS, layer: int, **conversion) -> Initializer:
    """Build a ``(key, shape, dtype)`` kernel initializer for layer ``layer`` of ``to_dense``.

    Args:
      model: fitted MARS model.
      layer: index of the Dense layer (0 = first hidden layer).
      **conversion: ``to_dense`` keyword arguments (widths, input_mean, balance, ...), not key.

    Returns:
      An initializer that raises ``ValueError`` if asked for a different shape.

    """
    return _initializer(model, layer, "kernel", conversion)


def mars_bias_init(model: MARS, layer: int, **conversion) -> Initializer:
    """Build the bias counterpart of ``mars_kernel_init``."""
    return _initializer(model, layer, "bias", conversion)


def mars_dense_stack(model: MARS, **conversion) -> MLP:
    """Build an ``MLP`` whose layers are initialized from ``to_dense(model, **conversion)``.

    Args:
      model: fitted MARS model.
      **conversion: ``to_dense`` keyword arguments; ``key`` (if given) only fixes the layer shapes
        here, the random extra units are drawn from the key passed to ``init``.

    Returns:
      The module; ``module.init(key, x)`` yields the converted parameters.

    """
    conversion = dict(conversion)
    shape_key = conversion.pop("key", None)
    params = to_dense(
        model, key=shape_key if shape_key is not None else jax.random.key(0), **conversion
    )
    n_layers = len(params)
    return MLP(
        features=tuple(params[f"Dense_{i}"]["bias"].shape[0] for i in range(n_layers)),
        kernel_inits=tuple(mars_kernel_init(model, i, **conversion) for i in range(n_layers)),
        bias_inits=tuple(mars_bias_init(model, i, **conversion) for i in range(n_layers)),
    )
