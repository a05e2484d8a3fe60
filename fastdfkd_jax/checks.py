"""Checks of config values before any compute: one message shape for every key.

`check_choice` refuses a value outside its choices with a ValueError naming the key, the value and
the choices: "Unknown synthesis.strategy 'greedy'; choose one of ('meta', ...)."
"""

from collections.abc import Collection
from typing import Any


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    """Raises a ValueError naming `name`, `value` and `choices` unless `value` is one of them."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {tuple(choices)}.")
