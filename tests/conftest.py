"""Test session set-up and the fixtures shared by the test modules.

The suite passes unchanged on a CPU and on a GPU:
- 8 simulated CPU devices for the sharding tests: XLA reads the flag once, at backend
  initialization, so it is set before anything imports jax. The sharding tests build their meshes
  from `jax.devices('cpu')` explicitly (a GPU machine's default backend has one device); tests
  that do not shard run on the default backend's first device as usual.
- Float32 matmuls and convolutions at full precision (`highest`) for everything a test compiles
  itself, so comparisons with known values or references do not depend on the backend (a GPU
  would otherwise use TF32). Jobs run from configs (`main.run`) compile under the config's
  `precision`, as users' runs do; their tests compare runs with each other.
- JAX's persistent compilation cache of the jobs and of MARS goes to a temporary directory of the
  session ($FASTDFKD_CACHE_DIR, $SPLINE_COMPILATION_CACHE), not to the user's cache.
"""

import importlib.util
import os
import re
import types

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402  (after XLA_FLAGS, which XLA reads when jax first starts a backend)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastdfkd_jax import checkpoint, compilation, config_args, data, models  # noqa: E402
from fastdfkd_jax.synthesis import baseline_losses  # noqa: E402
from spline import forward as spline_forward  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An absl flag definition in a script's source: its name.
_FLAG_DEFINITION = re.compile(r"DEFINE_\w+\(\s*['\"](\w+)['\"]")


def load_script(name: str) -> types.ModuleType:
    """`scripts/<name>.py` loaded as a module in this process.

    Scripts define their absl flags at import, on absl's one global FLAGS, and several define the
    same names (`--out`): a flag of the same name left by a script loaded earlier in this test
    process is dropped first, so the tests can load scripts in any order.
    """
    from absl import flags

    path = os.path.join(REPO, "scripts", f"{name}.py")
    with open(path) as f:
        for flag in _FLAG_DEFINITION.findall(f.read()):
            if flag in flags.FLAGS:
                delattr(flags.FLAGS, flag)
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFIGS = os.path.join(REPO, "configs")


@pytest.fixture(scope="session", autouse=True)
def compilation_cache_dir(tmp_path_factory):
    """The persistent compilation cache of the jobs and of MARS, in one directory of this test
    session (JAX has one cache directory per process: whichever sets it first, a MARS fit or a
    job, sets it for both)."""
    path = str(tmp_path_factory.mktemp("xla_cache"))
    envs = (compilation.CACHE_ENV, spline_forward.CACHE_ENV)
    previous = {env: os.environ.get(env) for env in envs}
    os.environ.update({env: path for env in envs})
    yield path
    for env, value in previous.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value


def load_config(spec: str):
    """`configs/<spec>` loaded by path, e.g. `load_config('dfkd_digits.py:fast2,runlocal')`."""
    return config_args.load_config(os.path.join(CONFIGS, spec))


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


@pytest.fixture(scope="session")
def fitted_teacher_dir(tmp_path_factory):
    """A tiny digits teacher in a second: random convolutions, a least-squares-fitted head.

    Random features + a linear head fitted to the training labels predict every class (76% test
    accuracy), so a student's accuracy distilled from it is informative (a randomly initialized
    head predicts one class for every input).
    """
    path = str(tmp_path_factory.mktemp("fitted_teacher"))
    info = data.get_info("digits")
    model = models.create_model("digits_cnn_tiny", num_classes=10)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    train = data.load_split("digits", "train")
    inputs = (train["image"] - np.asarray(info.mean)) / np.asarray(info.std)
    _, dense_inputs = baseline_losses.capture_dense_inputs(model, variables, inputs, train=False)
    features = np.concatenate([np.asarray(dense_inputs[-1]), np.ones((len(inputs), 1))], axis=1)
    head = np.linalg.lstsq(features, np.eye(10)[train["label"]], rcond=None)[0]
    params = {**variables["params"], "head": {"kernel": head[:-1], "bias": head[-1]}}
    checkpoint.save_teacher(
        path,
        {"params": params, "batch_stats": variables["batch_stats"]},
        arch="digits_cnn_tiny",
        num_classes=10,
        dataset="digits",
        image_shape=(8, 8, 1),
    )
    return path


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
