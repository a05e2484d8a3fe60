"""Backend-dependent 'auto' settings: parsing, the choice per platform, the resolved config."""

import pytest

from fastdfkd_jax import backend
from tests.conftest import load_config


def test_parsing_the_forms():
    assert backend.parse_bool("auto", "k") is None
    assert backend.parse_bool("True", "k") is True and backend.parse_bool("no", "k") is False
    assert backend.parse_bool(False, "k") is False
    assert backend.parse_count("auto", "k", 0) is None
    assert backend.parse_count("10", "k", 0) == 10 and backend.parse_count(3, "k", 1) == 3
    with pytest.raises(ValueError, match="synthesis.unroll='maybe' must be 'auto', 'true' or"):
        backend.parse_bool("maybe", "synthesis.unroll")
    with pytest.raises(ValueError, match="kd.steps_per_call='0' must be 'auto' or an integer >= 1"):
        backend.parse_count("0", "kd.steps_per_call", 1)
    with pytest.raises(ValueError, match="must be 'auto' or an integer >= 0"):
        backend.parse_count("ten", "synthesis.chunk_steps", 0)


def test_largest_divisor():
    assert backend.largest_divisor_at_most(2000, 10) == 10
    assert backend.largest_divisor_at_most(7, 10) == 7
    assert backend.largest_divisor_at_most(14, 10) == 7
    assert backend.largest_divisor_at_most(13, 10) == 1


@pytest.mark.parametrize(
    "platform, unroll, chunk, per_call",
    [("cpu", True, 10, 1), ("gpu", False, 0, 10), ("tpu", False, 0, 10)],
)
def test_auto_per_platform(platform, unroll, chunk, per_call):
    """Each method's own backend keys are resolved (DeepInversion: its chunks of its 2000 steps;
    Fast: its unroll), the other methods' blocks left as they are."""
    deepinv = load_config("dfkd_digits.py:deepinv2k")  # 2000 steps, kd.steps 50
    assert deepinv.synthesis.deepinversion.chunk_steps == "auto"
    assert backend.choices(deepinv, platform) == {
        "synthesis.deepinversion.chunk_steps": chunk,
        "kd.steps_per_call": per_call,
    }
    resolved = backend.resolve(deepinv, platform)
    assert resolved.synthesis.deepinversion.chunk_steps == chunk
    assert resolved.kd.steps_per_call == per_call
    assert resolved.synthesis.fast.unroll == resolved.synthesis.cmi.chunk_steps == "auto"
    assert deepinv.synthesis.deepinversion.chunk_steps == "auto"  # the input is not changed
    # Resolving a resolved config changes nothing.
    assert backend.resolve(resolved, platform).to_dict() == resolved.to_dict()

    fast = load_config("dfkd_digits.py:fast5")
    assert backend.choices(fast, platform) == {
        "synthesis.fast.unroll": unroll,
        "kd.steps_per_call": per_call,
    }
    assert backend.resolve(fast, platform).synthesis.fast.unroll is unroll


def test_explicit_values_win_and_bad_ones_are_refused():
    config = load_config("dfkd_digits.py:fast5")
    config.synthesis.fast.unroll, config.kd.steps_per_call = "false", "5"
    assert backend.choices(config, "cpu")["synthesis.fast.unroll"] is False
    assert backend.choices(config, "cpu")["kd.steps_per_call"] == 5
    config.kd.steps_per_call = "7"
    with pytest.raises(
        ValueError,
        match=r"kd.steps_per_call=7 must divide the student steps per synthesis call \(50\)",
    ):
        backend.validate(config)
