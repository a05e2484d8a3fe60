r"""Distill your own models: a linen CNN and an NNX CNN, trained on digits here, then distilled
into smaller students of your own without the training data (`fastdfkd_jax.api`).

    python examples/own_models.py             # both, about 2 minutes on 2 CPU cores
    python examples/own_models.py --only=nnx  # one of them

Prints each teacher's and student's test accuracy and writes the runs under /tmp/own_models (a
rerun resumes them). The models below are defined here, not in the library's zoo: a linen module
called as `model.apply(variables, x, train=...)` with `nn.BatchNorm`s, and an NNX model switched
by `model.train()`/`model.eval()` with `nnx.BatchNorm`s (docs/own_models.md has the contract).
"""

import argparse
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastdfkd_jax import api, data  # noqa: E402 -- after making the repository importable
from fastdfkd_jax.data import augment  # noqa: E402
from fastdfkd_jax.models import nnx_adapter  # noqa: E402

# The digits preset (schedule, generator, augmentation); its models are replaced by ours.
DIGITS_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "configs", "dfkd_digits.py"
)
# A shorter schedule than the preset's 40 epochs: the example runs in about two minutes.
SHORT = {"epochs": 16, "warmup": 2, "pool.capacity": 128 * 16, "sample_every_epochs": 0}
TEACHER_EPOCHS = 30
TEACHER_BATCH = 64
TEACHER_LEARNING_RATE = 3e-3


class LinenCNN(nn.Module):
    """Two conv-BN-ReLU stages, global average pooling, a linear classifier."""

    num_classes: int = 10
    width: int = 32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        for stage, features in enumerate((self.width, 2 * self.width)):
            x = nn.Conv(features, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
            if stage == 0:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class NNXCNN(nnx.Module):
    """The same network in Flax NNX."""

    def __init__(self, width: int, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(2 * width, momentum=0.9, rngs=rngs)
        self.head = nnx.Linear(2 * width, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.avg_pool(x, (2, 2), (2, 2))
        x = nnx.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean(axis=(1, 2)))


def train_teacher(module: nn.Module, variables: dict, seed: int = 0) -> dict:
    """A few epochs of supervised training on the digits train split (the teacher's data, which
    distillation never sees); returns the trained variables.
    """
    info, split = data.get_info("digits"), data.load_split("digits", "train")
    tx = optax.adam(TEACHER_LEARNING_RATE)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, stats, opt_state, images, labels):
        def loss_fn(params):
            x = augment.normalize(images, info.mean, info.std)
            logits, updates = module.apply(
                {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, updates["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), stats, opt_state

    order = np.random.default_rng(seed)
    for _ in range(TEACHER_EPOCHS):
        perm = order.permutation(len(split["label"]))
        for start in range(0, len(perm) - TEACHER_BATCH + 1, TEACHER_BATCH):
            idx = perm[start : start + TEACHER_BATCH]
            params, stats, opt_state = step(
                params, stats, opt_state, split["image"][idx], split["label"][idx]
            )
    return {"params": params, "batch_stats": stats}


def accuracy(module: nn.Module, variables: dict) -> float:
    """Test accuracy on digits."""
    info, split = data.get_info("digits"), data.load_split("digits", "test")
    x = augment.normalize(jnp.asarray(split["image"]), info.mean, info.std)
    logits = module.apply(variables, x, train=False)
    return float((np.asarray(logits).argmax(-1) == split["label"]).mean())


def linen_example(workdir: str, overrides: dict) -> dict:
    teacher = LinenCNN(width=32)
    init = teacher.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    teacher_vars = train_teacher(teacher, init)
    result = api.distill(
        teacher,
        LinenCNN(width=8),  # initialized by the library from the run's seed
        teacher_variables=teacher_vars,
        workdir=workdir,
        data="digits",
        config=DIGITS_CONFIG,
        method="fast5",
        overrides=overrides,
    )
    return dict(
        teacher=accuracy(teacher, teacher_vars), student=accuracy(result.student, result.variables)
    )


def nnx_example(workdir: str, overrides: dict) -> dict:
    teacher = NNXCNN(width=32, rngs=nnx.Rngs(0))
    module, variables = nnx_adapter.from_nnx(teacher)  # trained through its linen view
    nnx_adapter.to_nnx(teacher, train_teacher(module, variables))
    result = api.distill(
        teacher,
        NNXCNN(width=8, rngs=nnx.Rngs(1)),  # its current values are the initialization
        workdir=workdir,
        data="digits",
        config=DIGITS_CONFIG,
        method="fast5",
        overrides=overrides,
    )
    student = result.into(NNXCNN(width=8, rngs=nnx.Rngs(2)))  # the distilled values, as NNX
    teacher.eval()
    student.eval()
    split, info = data.load_split("digits", "test"), data.get_info("digits")
    x = augment.normalize(jnp.asarray(split["image"]), info.mean, info.std)
    return dict(
        teacher=float((np.asarray(teacher(x)).argmax(-1) == split["label"]).mean()),
        student=float((np.asarray(student(x)).argmax(-1) == split["label"]).mean()),
    )


EXAMPLES = {"linen": linen_example, "nnx": nnx_example}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(EXAMPLES), default=None)
    parser.add_argument("--workdir", default="/tmp/own_models")
    args = parser.parse_args()
    for name, example in EXAMPLES.items():
        if args.only in (None, name):
            scores = example(os.path.join(args.workdir, name), dict(SHORT, progress_bar=False))
            print(f"{name}: teacher {scores['teacher']:.2%}, student {scores['student']:.2%}")


if __name__ == "__main__":
    main()
