"""Flax NNX models in the library: an NNX model seen as a linen module with its variables.

Everything in the library (synthesis, distillation, evaluation, checkpoints, sharding) computes
with a linen module and its variables `{'params': ..., 'batch_stats': ...}`, called as
`module.apply(variables, x, train=...)`. `from_nnx(model)` gives an NNX model that pair:

- `params` are the model's `nnx.Param`s and `batch_stats` its `nnx.BatchStat`s, as nested dicts
  keyed by attribute name (list indices as strings, so the variables save as any others);
  everything else the model holds (e.g. an `nnx.Rngs`) is kept as it was, not trained (each call
  starts from it again);
- `train=True` calls `model.train()` first and `train=False` `model.eval()` (NNX's switch of
  `nnx.BatchNorm`'s `use_running_average` and `nnx.Dropout`'s `deterministic`); a model with
  another switch passes `set_mode(model, train)`;
- while a probe is active (`probes.observe`), the calls of its `nnx.BatchNorm`, `nnx.Linear` and
  `nnx.Conv` layers are reported, so the BatchNorm-statistics methods read an NNX teacher as they
  read a linen one.

`to_nnx(model, variables)` writes variables (e.g. a distilled student's) back into an NNX model.
A model holding random state (`nnx.Rngs`, e.g. for Dropout) would draw the same numbers every step
(its key is kept state): `random_state(model)` names it, and the Python API refuses such a
student (a teacher only runs in eval mode, where Dropout draws nothing).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx, traverse_util

from fastdfkd_jax.models import probes

# The NNX layers whose calls a probe sees, and the kind each is reported as.
OBSERVED_LAYERS = (
    (nnx.BatchNorm, probes.BATCHNORM),
    (nnx.Linear, probes.DENSE),
    (nnx.Conv, probes.CONV),
)
# Linen collection of each NNX variable type the library trains or updates.
COLLECTIONS = (("params", nnx.Param), ("batch_stats", nnx.BatchStat))

SetMode = Callable[[nnx.Module, bool], None]


def default_set_mode(model: nnx.Module, train: bool) -> None:
    """NNX's own switch: `model.train()` or `model.eval()`."""
    if train:
        model.train()
    else:
        model.eval()


class _Static:
    """Holds the NNX model's structure and kept state in a linen field: hashed by identity, never
    traced (a jitted function closing over the module treats it as a constant).
    """

    def __init__(self, graphdef: Any, states: dict[str, nnx.State], kept: nnx.State):
        self.graphdef, self.states, self.kept = graphdef, states, kept

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def _key(path: tuple) -> tuple[str, ...]:
    return tuple(str(k) for k in path)


def _as_variables(state: nnx.State) -> dict:
    """An NNX state as nested dicts of arrays, keyed by strings."""
    flat = {_key(path): variable.get_value() for path, variable in nnx.to_flat_state(state)}
    return traverse_util.unflatten_dict(flat)


def _with_values(state: nnx.State, values: dict) -> nnx.State:
    """A new state shaped as `state` holding `values` (nested dicts as `_as_variables` gives)."""
    flat = traverse_util.flatten_dict(values)
    return nnx.from_flat_state(
        [
            (path, variable.replace(value=flat[_key(path)]))
            for path, variable in nnx.to_flat_state(state)
        ]
    )


_OBSERVED_CLASSES: dict[type, type] = {}


def _observed_class(cls: type, kind: str) -> type:
    """A subclass of the NNX layer class `cls` whose calls are reported to the probes."""
    if cls not in _OBSERVED_CLASSES:

        def __call__(self, x, *args, **kwargs):  # noqa: N807 -- the layer's own call
            name = getattr(self, "_probe_name", None)
            if kind == probes.BATCHNORM:
                call = probes.LayerCall(kind, name, x, self.mean.get_value(), self.var.get_value())
            else:
                call = probes.LayerCall(kind, name, x)
            probes.report(call)
            return cls.__call__(self, x, *args, **kwargs)

        _OBSERVED_CLASSES[cls] = type(f"Observed{cls.__name__}", (cls,), {"__call__": __call__})
    return _OBSERVED_CLASSES[cls]


def _observe_layers(model: nnx.Module) -> None:
    """Makes the (freshly merged) model's layers report their calls to the active probes."""
    for path, node in nnx.iter_graph(model):
        for layer_class, kind in OBSERVED_LAYERS:
            if isinstance(node, layer_class):
                object.__setattr__(node, "_probe_name", "/".join(map(str, path)))
                node.__class__ = _observed_class(type(node), kind)
                break


class NNXModel(nn.Module):
    """An NNX model as a linen module: `apply(variables, x, train=...)` (module docstring).

    Attributes:
      static: the model's structure and kept state (`from_nnx` makes it).
      set_mode: `(model, train) -> None`, the model's train/eval switch.
      label: what messages and records call the model (its class's import path).
    """

    static: _Static
    set_mode: SetMode = default_set_mode
    label: str = "nnx"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        states = {}
        for collection, _ in COLLECTIONS:
            template = self.static.states[collection]
            initial = _as_variables(template)
            values = {
                name: self.variable(collection, name, lambda v=value: v).value
                for name, value in initial.items()
            }
            states[collection] = _with_values(template, values)
        # A fresh copy of the kept state each call: a layer that updates it (a Dropout's key
        # counter) then changes the copy inside this trace, never the state held here.
        kept = nnx.from_flat_state(
            [
                (path, v.replace(value=v.get_value()))
                for path, v in nnx.to_flat_state(self.static.kept)
            ]
        )
        model = nnx.merge(self.static.graphdef, *states.values(), kept)
        if probes.nnx_observers():
            _observe_layers(model)
        self.set_mode(model, train)
        out = model(x)
        if train and self.is_mutable_collection("batch_stats"):
            for name, value in _as_variables(nnx.state(model, nnx.BatchStat)).items():
                self.put_variable("batch_stats", name, value)
        return out


def module_label(model: Any) -> str:
    """The import path `package.module:ClassName` of a model's class."""
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def from_nnx(model: nnx.Module, set_mode: SetMode = default_set_mode) -> tuple[NNXModel, dict]:
    """The linen module and variables `{'params', 'batch_stats'}` of an NNX model (its current
    values: a trained teacher's, or an untrained student's initialization).
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"from_nnx takes a Flax NNX model, got {type(model).__name__}.")
    graphdef, params, batch_stats, kept = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    states = {"params": params, "batch_stats": batch_stats}
    module = NNXModel(_Static(graphdef, states, kept), set_mode, module_label(model))
    variables = {collection: _as_variables(states[collection]) for collection, _ in COLLECTIONS}
    return module, {k: v for k, v in variables.items() if v}


def random_state(model: nnx.Module) -> list[str]:
    """The paths of the random state (`nnx.RngState`: keys and counters) a model holds."""
    return [
        "/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.RngState))
    ]


def to_nnx(model: nnx.Module, variables: dict) -> nnx.Module:
    """Writes `variables` (as `from_nnx` gives them) into `model` in place; returns it.

    Raises:
      ValueError: naming the first variable the model lacks or whose shape differs.

    """
    for collection, variable_type in COLLECTIONS:
        if collection not in variables:
            continue
        flat = traverse_util.flatten_dict(variables[collection])
        for path, variable in nnx.to_flat_state(nnx.state(model, variable_type)):
            name = f"{collection}/{'/'.join(_key(path))}"
            if _key(path) not in flat:
                raise ValueError(f"The variables have no {name} for this {type(model).__name__}.")
            got, want = jax.numpy.shape(flat[_key(path)]), variable.get_value().shape
            if got != want:
                raise ValueError(
                    f"{name} has shape {got}; this {type(model).__name__} needs {want}."
                )
        nnx.update(model, _with_values(nnx.state(model, variable_type), variables[collection]))
    return model


def is_nnx_class(constructor: Any) -> bool:
    """Whether `constructor` is a Flax NNX model class."""
    return isinstance(constructor, type) and issubclass(constructor, nnx.Module)


def is_nnx(model: Any) -> bool:
    """Whether `model` is a Flax NNX model."""
    return isinstance(model, nnx.Module)
