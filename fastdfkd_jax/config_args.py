"""The config argument parser and loading config files by path.

Config files (`configs/<job>_<dataset>.py`) are loaded by path (`load_config`), never imported as a
package; they import the library only, never each other. Each defines `get_config(arg=None)` whose
`arg` (the text after `:` in `--config=FILE:ARG`) is parsed by `parse_arg` into variants,
big_vision style: comma-separated `key=value` pairs and bare words, e.g. `fast5,runlocal` or
`method=fast5,runlocal`. A bare word is a boolean flag set to True (`runlocal`) or, when it is one
of a key's `choices`, that key's value (`fast5` for `method`).
"""

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from fastdfkd_jax import checks


def _convert(key: str, text: str, default: Any) -> Any:
    """`text` as the type of `default` (bool, int, float or str)."""
    if isinstance(default, bool):
        flag = checks.bool_of_text(text)
        if flag is None:
            raise ValueError(f"Config argument {key}={text!r} is not a boolean.")
        return flag
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(
            f"Config argument {key}={text!r} is not a {type(default).__name__}."
        ) from None


def parse_arg(
    arg: str | None,
    *,
    choices: Mapping[str, Sequence[str]] | None = None,
    **defaults: Any,
) -> ml_collections.ConfigDict:
    """The config argument `arg` parsed into `defaults` (every key must have one).

    Args:
      arg: e.g. `'fast5,runlocal'`, `'method=fast5,runlocal'`, `'cifar10,fast5,wrn40_2-wrn16_1'`;
        None or '' gives the defaults.
      choices: key -> the values a bare word may select (values must not be shared between keys).
      **defaults: every accepted key with its default value (its type is the value's type).

    Returns:
      A ConfigDict of the keys with their parsed values.

    Raises:
      ValueError: an unknown key or word, a value of the wrong type, or a value outside `choices`.
    """
    choices = dict(choices or {})
    values = dict(defaults)
    for token in (t.strip() for t in (arg or "").split(",")):
        if not token:
            continue
        if "=" in token:
            key, text = (s.strip() for s in token.split("=", 1))
            if key not in defaults:
                raise ValueError(
                    f"Unknown config argument key {key!r}; the keys are {sorted(defaults)}."
                )
            values[key] = _convert(key, text, defaults[key])
            continue
        owners = [k for k, allowed in choices.items() if token in allowed]
        if isinstance(defaults.get(token), bool):
            values[token] = True
        elif len(owners) == 1:
            values[owners[0]] = token
        else:
            flags = sorted(k for k, v in defaults.items() if isinstance(v, bool))
            raise ValueError(
                f"Unknown config argument {token!r}; flags: {flags}; values: "
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(choices.items()))
                + "."
            )
    for key, allowed in choices.items():
        if values[key] not in allowed:
            raise ValueError(
                f"Config argument {key}={values[key]!r} is not one of {', '.join(allowed)}."
            )
    return ml_collections.ConfigDict(values)


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of `spec` = `'path/to/file.py'` or `'path/to/file.py:arg'`, loaded by path.

    What `--config=SPEC` gives on the command line, before `--config.x=...` overrides.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"No config file at {path!r} (from {spec!r}).")
    name = "_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def repo_path(config_file: str, relative: str) -> str:
    """The absolute path of `relative` to the repository root, from a config file's `__file__`
    (config files live in `<root>/configs/`).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
    return os.path.join(root, relative)


def sibling(config_file: str, name: str) -> str:
    """The absolute path of config file `name` in the folder of `config_file` (a `__file__`)."""
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), name)
