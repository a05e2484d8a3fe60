"""Checks of config values before any compute: one message shape for every key, and the error
class of a user's mistake.

`check_choice` refuses a value outside its choices with a ValueError naming the key, the value and
the choices: "Unknown synthesis.fast.strategy 'greedy'; choose one of ('meta', ...)." A
`UserInputError` (a bad setting, a missing teacher or data set) is printed by the `fastdfkd`
command as one line, without a traceback; any other exception keeps its traceback.
"""

from collections.abc import Collection
from typing import Any


class UserInputError(ValueError):
    """A mistake in what the user gave (a setting, a path, a data set): one line says what to do."""


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    """Raises a ValueError naming `name`, `value` and `choices` unless `value` is one of them."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {tuple(choices)}.")


# The words a text setting may use for a boolean.
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


def bool_of_text(text: str) -> bool | None:
    """'true', '1', 'yes' -> True; 'false', '0', 'no' -> False (any case); anything else None."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None
