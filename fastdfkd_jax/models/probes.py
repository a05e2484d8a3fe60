"""Layer probes: what a model's BatchNorm, dense and convolution layers receive, for linen and NNX.

Synthesis reads a teacher from the inside: the input of every BatchNorm with that layer's running
statistics (the BatchNorm-statistics loss), the classifier's input (the generative baselines'
features), a stage's activations (ZSKT's attention). `observe(callback)` reports each layer call
of a model applied inside it as a `LayerCall`, in call order, without a change to the model's code:

- linen modules through `nn.intercept_methods` (every module's `__call__`; the zoo's models);
- Flax NNX models through `fastdfkd_jax.models.nnx_adapter`, which reports the calls of
  `nnx.BatchNorm`, `nnx.Linear` and `nnx.Conv` layers (and their subclasses) while a probe is
  active: `nnx_observers()` is what it reads.

Probes run at trace time: they add no operation to the compiled computation.
"""

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax

# LayerCall.kind values.
BATCHNORM = "batchnorm"
DENSE = "dense"
CONV = "conv"
OTHER = "other"


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer.

    Attributes:
      kind: `BATCHNORM`, `DENSE`, `CONV` or `OTHER` (any other linen module's `__call__`).
      name: the layer's name (a linen module's `name`; an NNX layer's attribute path, '/'-joined).
      inputs: its first positional argument, e.g. float [B, H, W, C] (None when called without).
      running_mean, running_var: a BatchNorm's running statistics [C] (None for other kinds).
    """

    kind: str
    name: str | None
    inputs: Any
    running_mean: jax.Array | None = None
    running_var: jax.Array | None = None


Callback = Callable[[LayerCall], None]

_NNX_OBSERVERS: contextvars.ContextVar[tuple[Callback, ...]] = contextvars.ContextVar(
    "fastdfkd_nnx_layer_observers", default=()
)


def _linen_kind(module: nn.Module) -> str:
    if isinstance(module, nn.BatchNorm):
        return BATCHNORM
    if isinstance(module, nn.Dense):
        return DENSE
    if isinstance(module, nn.Conv):
        return CONV
    return OTHER


def _linen_call(module: nn.Module, args: tuple) -> LayerCall:
    kind = _linen_kind(module)
    inputs = args[0] if args else None
    if kind != BATCHNORM:
        return LayerCall(kind, module.name, inputs)
    stats = module.variables["batch_stats"]
    return LayerCall(kind, module.name, inputs, stats["mean"], stats["var"])


@contextlib.contextmanager
def observe(callback: Callback) -> Iterator[None]:
    """Reports every layer call of the models applied inside the block to `callback`."""

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            callback(_linen_call(context.module, args))
        return next_fun(*args, **kwargs)

    token = _NNX_OBSERVERS.set((*_NNX_OBSERVERS.get(), callback))
    try:
        with nn.intercept_methods(interceptor):
            yield
    finally:
        _NNX_OBSERVERS.reset(token)


def nnx_observers() -> tuple[Callback, ...]:
    """The callbacks of the active `observe` blocks (for the NNX adapter)."""
    return _NNX_OBSERVERS.get()


def report(call: LayerCall) -> None:
    """Sends an NNX layer's call to the active observers."""
    for callback in _NNX_OBSERVERS.get():
        callback(call)
