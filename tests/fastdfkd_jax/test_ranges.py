"""Every numeric config key has a declared range, checked before any compute: a sweep of every
numeric key of the presets with 0, -1, NaN and infinities, accepted exactly where its range allows.
"""

import math
import re

import ml_collections
import pytest

from fastdfkd_jax import ranges, teacher, train
from fastdfkd_jax.benchmark import configs as bench_configs
from tests.conftest import load_config

# preset -> (the job's validate, its range table)
PRESETS = {
    "dfkd_digits.py:fast5": (train.validate, ranges.DFKD),
    "dfkd_digits.py:cmi500": (train.validate, ranges.DFKD),
    "dfkd_digits.py:dafl": (train.validate, ranges.DFKD),
    "teacher_digits.py": (teacher.validate, ranges.TEACHER),
    "bench_digits.py:quick": (bench_configs.validate, ranges.BENCHMARK),
}
# Presets whose numeric keys must all be declared (the other jobs' configs are not swept).
DECLARED = {
    **{p: t for p, (_, t) in PRESETS.items()},
    "dfkd_cifar.py:cifar10,fast5,resnet34-resnet18": ranges.DFKD,
    "dfkd_imagenet.py": ranges.DFKD,
    "dfkd_nyuv2.py": ranges.DFKD,
    "dfkd_fashion_mnist.py": ranges.DFKD,
    "teacher_cifar.py": ranges.TEACHER,
    "bench_fashion_mnist.py": ranges.BENCHMARK,
}


@pytest.mark.parametrize("spec", sorted(DECLARED))
def test_every_numeric_key_has_a_range(spec):
    keys = ranges.numeric_keys(load_config(spec).to_dict())
    assert not sorted(keys - set(DECLARED[spec])), "declare these keys' ranges in ranges.py"


def _trials(value):
    """The values the sweep sets: 0, -1 for integers; also NaN and infinities for floats."""
    if isinstance(value, float):
        return (0.0, -1.0, math.nan, math.inf, -math.inf)
    return (0, -1)


def _set(config: ml_collections.ConfigDict, key: str, index, value) -> None:
    *path, leaf = key.split(".")
    block = config
    for part in path:
        block = block[part]
    if index is None:
        block[leaf] = value
    else:
        values = list(block[leaf])
        values[index] = value
        block[leaf] = tuple(values)


@pytest.mark.parametrize("spec", sorted(PRESETS))
def test_every_numeric_key_refuses_out_of_range_values_naming_key_and_value(spec, monkeypatch):
    validate, table = PRESETS[spec]
    # Nothing may compile or run: validation comes before any compute.
    monkeypatch.setattr("jax.jit", lambda *a, **k: pytest.fail("compiled during validation"))
    base = load_config(spec).to_dict()
    swept = 0
    for key in sorted(ranges.numeric_keys(base)):
        *path, leaf = key.split(".")
        value = base
        for part in (*path, leaf):
            value = value[part]
        elements = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for index, element in elements:
            for trial in _trials(element):
                config = ml_collections.ConfigDict(load_config(spec).to_dict())
                _set(config, key, index, trial)
                shown = key if index is None else f"{key}[{index}]"
                swept += 1
                if table[key].allows(trial):
                    try:
                        validate(config)
                    except ValueError as error:  # another check may refuse it, never the range
                        assert "is out of range" not in str(error), (shown, trial, error)
                else:
                    with pytest.raises(ValueError, match="^" + re.escape(f"{shown}=")):
                        validate(config)
    assert swept > 10


def test_range_descriptions():
    assert ranges.Range(1, integer=True, also=(-1,)).describe() == "an integer >= 1 or -1"
    assert ranges.FRACTION.describe() == "a finite number > 0 and <= 1"
    assert not ranges.POSITIVE.allows(math.nan) and not ranges.ANY.allows(math.inf)
    with pytest.raises(ValueError, match=r"kd.batch_size=0 is out of range: it must be an integer"):
        ranges.check({"kd": {"batch_size": 0}}, ranges.DFKD)
