"""Test session set-up: 8 simulated CPU devices for the sharding tests.

XLA reads the flag once, at backend initialization, so it is set before anything imports jax.
Tests that do not shard run on the first device as usual.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402  (after XLA_FLAGS, which XLA reads when jax first starts a backend)
import pytest  # noqa: E402


@pytest.fixture
def fast_compile():
    """Compiles with most XLA optimizations off: tiny test models compile in a fraction of the time.

    Both sides of every comparison in a test compile the same way, so the checks are unaffected.
    """
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
