"""Test session set-up and the fixtures shared by the test modules.

8 simulated CPU devices for the sharding tests: XLA reads the flag once, at backend
initialization, so it is set before anything imports jax. Tests that do not shard run on the
first device as usual.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402  (after XLA_FLAGS, which XLA reads when jax first starts a backend)
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

from fastdfkd_jax import checkpoint, config_blocks, models  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


def load_config(spec: str):
    """`configs/<spec>` loaded by path, e.g. `load_config('dfkd_digits.py:fast2,runlocal')`."""
    return config_blocks.load_config(os.path.join(CONFIGS, spec))


def save_random_teacher(path, arch, dataset, image_shape, num_classes):
    """A randomly initialized teacher directory (the mechanics do not need a trained one)."""
    model = models.create_model(arch, num_classes=num_classes)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False)
    checkpoint.save_teacher(
        path,
        variables,
        arch=arch,
        num_classes=num_classes,
        dataset=dataset,
        image_shape=image_shape,
    )
    return path


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A randomly initialized tiny digits teacher: the teacher of the `runlocal` digits configs."""
    path = str(tmp_path_factory.mktemp("teacher"))
    return save_random_teacher(path, "digits_cnn_tiny", "digits", (8, 8, 1), 10)


@pytest.fixture
def fast_compile():
    """Compiles with most XLA optimizations off: tiny test models compile in a fraction of the time.

    Sharding (the SPMD partitioner) is not an optimization and still runs; both sides of every
    comparison in a test compile the same way, so the checks are unaffected.
    """
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
