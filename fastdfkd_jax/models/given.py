"""A model a user gives in code: its linen form, and the label its run's records name it by.

`as_linen` takes a linen module (with its variables) or an NNX model (`nnx_adapter`); `label` is
the class's import path and its constructor's literal fields, as a model directory records them.
"""

import ast
import dataclasses
from typing import Any

import flax.linen as nn

from fastdfkd_jax.models import nnx_adapter

# Linen dataclass fields a model directory does not record as constructor arguments: linen's own,
# the class count (recorded apart) and the compute dtype (the run's precision policy sets it).
NOT_ARGUMENTS = ("parent", "name", "num_classes", "dtype")


def _is_literal(value: Any) -> bool:
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


def label(module: Any) -> tuple[str, str, bool]:
    """(arch, kwargs, complete) that name a given model in its run's records: its class's import
    path and, for a linen module, its constructor fields that are Python literals, as a dict
    literal; `complete` says whether those fields rebuild it (no field left out; never for NNX,
    whose constructor arguments are not kept).
    """
    if isinstance(module, nnx_adapter.NNXModel):
        return module.label, "", False
    arch = nnx_adapter.module_label(module)
    fields = {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(module)
        if f.init and f.name not in NOT_ARGUMENTS
    }
    literal = {name: value for name, value in fields.items() if _is_literal(value)}
    return arch, repr(literal) if literal else "", literal == fields


def as_linen(model: Any, variables: dict | None, what: str) -> tuple[nn.Module, dict | None]:
    """A given model as (linen module, variables or None)."""
    if nnx_adapter.is_nnx(model):
        if variables is not None:
            raise ValueError(f"The {what} is an NNX model: its variables are its own; pass none.")
        random = nnx_adapter.random_state(model)
        if what == "student" and random:
            raise ValueError(
                f"The NNX student {type(model).__name__} holds random state ({', '.join(random)}: "
                "an nnx.Rngs, e.g. for Dropout), which would draw the same numbers every step: "
                "give a student without it."
            )
        return nnx_adapter.from_nnx(model)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"The {what} must be a Flax linen module, an NNX model or a model directory; got "
            f"{type(model).__name__}."
        )
    return model, variables
