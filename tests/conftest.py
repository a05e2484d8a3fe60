"""Test session set-up: 8 simulated CPU devices for the sharding tests.

XLA reads the flag once, at backend initialization, so it is set before anything imports jax.
Tests that do not shard run on the first device as usual.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
