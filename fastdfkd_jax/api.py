"""The Python API: distill your own Flax models, load the result, or make synthetic data alone.

    from fastdfkd_jax import api
    result = api.distill(teacher, student, workdir="runs/mine", data="digits",
                         teacher_variables=teacher_vars, overrides={"epochs": 40})
    result.variables, result.summary["student_test_accuracy"]

- `distill(teacher, student, ...)` runs the CLI's distillation job (`fastdfkd --config=...`) on
  models given in code, sharded over the local devices as the CLI is, and writes the same workdir:
  a rerun of the same call resumes it, a call of another setting there is refused. It returns the
  distilled student's module and variables, the run's summary and its model directory.
- `load_model(directory)` reads a model directory (a trained teacher, a distilled student): the
  module and its variables, ready to be the next run's teacher.
- `synthesize(teacher, num_images, ...)` returns synthetic images and the teacher's labels and
  probabilities on them, by any synthesis method, without a student (calibration or pruning data:
  data-free quantization needs exactly this); `scripts/synthesize.py` writes them to a file.

A model is a **linen** module called as `model.apply(variables, x, train=...)` on NHWC images
normalized by the data's mean and std, returning logits [N, K], with its BatchNorm statistics in
the `batch_stats` collection (`nn.BatchNorm`), or a **Flax NNX** model (`nnx.Module`, called as
`model(x)`, switched by `model.train()`/`model.eval()`, with `nnx.BatchNorm` layers), read
through `models.nnx_adapter`. A model with another signature is wrapped in a small linen module
that calls it, not edited. The BatchNorm-statistics methods (all but DAFL and ZSKT) need the
teacher's BatchNorms; each requirement is checked before any compute (docs/own_models.md).

`data` says the images' shape, class count and normalization, and gives the test split the
student is scored on: a dataset name (`'digits'`, `'fashion_mnist'`, ..., `'npz:PATH'`) or
`TestSplit` arrays, written into the workdir as a `npz` dataset.
"""

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fastdfkd_jax import (
    checkpoint,
    components,
    config_args,
    jobs,
    methods,
    models,
    run_data,
    sharding,
    train,
)
from fastdfkd_jax import config_blocks as blocks
from fastdfkd_jax.data import augment, npz
from fastdfkd_jax.models import given, nnx_adapter

# Where `distill` writes a `TestSplit` in its workdir (named by its content's digest).
TEST_SPLIT_FILE = "test_split_{}.npz"
# The model directory's flag of a linen model whose constructor fields are not all recorded.
INCOMPLETE_KWARGS = "kwargs_incomplete"
# The method of a run from the library's defaults when none is named.
DEFAULT_METHOD = "fast5"


@dataclasses.dataclass(frozen=True)
class TestSplit:
    """A test split given as arrays, and what the models' inputs are.

    Attributes:
      images: float [N, H, W, C] in [0, 1].
      labels: int [N] in 0..num_classes-1.
      num_classes: the models' logits.
      mean, std: [C], the normalization the models take (x - mean) / std.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Distilled:
    """What `distill` returns.

    Attributes:
      student: the student's linen module (an NNX student's adapter).
      variables: its distilled variables `{'params', 'batch_stats'}` (host arrays).
      summary: the run's `summary.json`.
      student_dir: its model directory (`load_model`), the next run's teacher.
    """

    student: nn.Module
    variables: dict
    summary: dict
    student_dir: str

    def into(self, model: Any) -> Any:
        """Writes the distilled variables into an NNX model of the student's architecture."""
        return nnx_adapter.to_nnx(model, self.variables)


def _dataset_name(data: str | TestSplit, workdir: str) -> str:
    """The dataset name of `data`; a `TestSplit` is written into `workdir` under a name of its
    content's digest (another split is another file, and another run's never overwritten).
    """
    if isinstance(data, TestSplit):
        digest = hashlib.sha256()
        for array in (data.images, data.labels, data.num_classes, data.mean, data.std):
            digest.update(np.ascontiguousarray(np.asarray(array, np.float64)).tobytes())
        path = os.path.join(
            os.path.abspath(workdir), TEST_SPLIT_FILE.format(digest.hexdigest()[:16])
        )
        if os.path.exists(path):
            return npz.PREFIX + path
        return npz.write(
            path,
            test_images=data.images,
            test_labels=data.labels,
            num_classes=data.num_classes,
            mean=data.mean,
            std=data.std,
        )
    if not isinstance(data, str):
        raise ValueError(f"data must be a dataset name or a TestSplit, got {type(data).__name__}.")
    return data


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
    """Sets dotted keys as `--config.a.b=value` does: a key the config does not declare, or a
    value of another type, is refused naming the key.
    """
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        block = config
        for part in parents:
            if part not in block or not isinstance(block[part], ml_collections.ConfigDict):
                raise ValueError(f"Unknown config key {key!r}.")
            block = block[part]
        if leaf not in block:
            raise ValueError(f"Unknown config key {key!r}.")
        try:
            block[leaf] = value
        except TypeError as error:
            raise ValueError(f"Config key {key!r}: {error}") from None


def make_config(
    config: str | ml_collections.ConfigDict | None,
    method: str | None,
    dataset: str,
    overrides: Mapping[str, Any] | None,
) -> ml_collections.ConfigDict:
    """The run's config: `config` (a ConfigDict, or a config file `'path.py[:arg]'`, whose method
    stands unless `method` is given), or the library's defaults for `dataset` with `method`
    (default `DEFAULT_METHOD`); then the `overrides`.
    """
    from_defaults = config is None
    if from_defaults:
        config = blocks.dfkd_config(dataset, "", "")
    elif isinstance(config, str):
        config = config_args.load_config(config)
    else:
        config = ml_collections.ConfigDict(config.to_dict())  # the caller's stays unchanged
    config.dataset.name = dataset
    if method is None and from_defaults:
        method = DEFAULT_METHOD
    if method is not None:
        if method not in methods.METHODS:
            raise ValueError(f"Unknown method {method!r}; choose one of {list(methods.METHODS)}.")
        methods.apply_method(config, method)
    apply_overrides(config, dict(overrides or {}))
    return config


def distill(
    teacher: Any,
    student: Any,
    *,
    workdir: str,
    data: str | TestSplit,
    teacher_variables: dict | None = None,
    student_variables: dict | None = None,
    method: str | None = None,
    config: str | ml_collections.ConfigDict | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Distilled:
    """Distills `teacher` into `student` without training data (module docstring).

    Args:
      teacher: a linen module (with `teacher_variables`), an NNX model, or a model directory.
      student: a linen module (initialized by the library from the run's seed, or from
        `student_variables`), an NNX model (its current values are the initialization), or a
        model name (a zoo name or an import path `'package.module:ClassName'`).
      workdir: the run's directory (checkpoints, metrics, summary, the student's model directory).
      data: a dataset name or a `TestSplit` (shape, classes, normalization and test split).
      method: a named method (`fastdfkd --list_methods`), applied after `config`; None: the
        config's own method (`DEFAULT_METHOD` with the library's defaults).
      config: a ConfigDict or a config file `'configs/dfkd_digits.py:fast5'`; None: the library's
        defaults (the original's CIFAR schedule: give `overrides` for a smaller problem).
      overrides: dotted config keys and values, e.g. `{'epochs': 40, 'kd.steps': 50}`.

    Returns:
      `Distilled`: the student's module and variables, the summary, its model directory.

    Raises:
      ValueError (`checks.UserInputError`): a refused setting or model, before any compute.

    """
    run_config = make_config(config, method, _dataset_name(data, workdir), overrides)
    if run_config.mars_head.enabled:
        raise ValueError(
            "mars_head.enabled: the MARS head follow-up reads the run's models from the config, "
            "not given ones; run it with the command on the finished workdir."
        )
    models_given = {}
    if isinstance(teacher, str):
        if teacher_variables is not None:
            raise ValueError("The teacher is a model directory: its variables are its own.")
        meta = checkpoint.load_teacher_meta(teacher)
        _refuse_nnx_directory(meta, teacher)
        run_config.teacher.checkpoint = teacher
        run_config.teacher.arch = meta["arch"]
        run_config.teacher.kwargs = repr(meta["kwargs"]) if meta.get("kwargs") else ""
    else:
        module, variables = given.as_linen(teacher, teacher_variables, "teacher")
        if variables is None:
            raise ValueError("A linen teacher needs its variables: pass teacher_variables.")
        models_given["teacher"] = (module, variables)
        run_config.teacher.arch, run_config.teacher.kwargs, _ = given.label(module)
    complete = True
    if isinstance(student, str):
        if student_variables is not None:
            raise ValueError(f"The student is the model name {student!r}: pass no variables.")
        run_config.student.arch = student
    else:
        module, variables = given.as_linen(student, student_variables, "student")
        if variables is None:  # what the trainer would draw from the run's seed, made here so
            # that the student's initialization (its architecture) is part of the fingerprint
            variables = _init_student(module, run_config)
        models_given["student"] = (module, variables)
        run_config.student.arch, run_config.student.kwargs, complete = given.label(module)
    run_config.job = "dfkd"
    summary = jobs.run(run_config, workdir, **models_given)
    student_dir = os.path.join(workdir, train.STUDENT_DIR)
    if not complete:  # the directory cannot rebuild the student: `load_model` asks for `like`
        meta_path = os.path.join(student_dir, checkpoint.TEACHER_META)
        with open(meta_path) as f:
            meta = json.load(f)
        with open(meta_path, "w") as f:
            json.dump({**meta, INCOMPLETE_KWARGS: True}, f, indent=2)
    _, variables = checkpoint.load_teacher(student_dir)
    if "student" in models_given:
        student_module = models_given["student"][0]
    else:
        student_module = load_model(student_dir)[0]
    return Distilled(student_module, variables, summary, student_dir)


def _init_student(module: nn.Module, config: ml_collections.ConfigDict) -> dict:
    """The student's variables as the trainer initializes them (`state.init_classifier` with the
    run's `student` key), checked to take the data's images first.
    """
    info = run_data.dataset_info(config)
    models.check_fits(module, info, "student")
    rng = components.run_keys(config.seed)["student"]
    return module.init(rng, jnp.zeros((1, *info.image_shape), jnp.float32), train=False)


def _refuse_nnx_directory(meta: dict, directory: str) -> None:
    """An NNX model's directory cannot rebuild its model (its constructor's arguments are not
    kept), nor a linen model's whose fields are not all literals: the caller passes one.
    """
    arch = meta["arch"]
    if models.is_import_path(arch) and nnx_adapter.is_nnx_class(models.from_import_path(arch)):
        raise ValueError(
            f"The model at {directory!r} is an NNX {arch!r}: pass a model of it, "
            "load_model(directory, like=model), and give that model."
        )
    if meta.get(INCOMPLETE_KWARGS):
        raise ValueError(
            f"The model at {directory!r} ({arch!r}) has constructor fields that are not Python "
            "literals, so it cannot be rebuilt from the directory: load_model(directory, "
            "like=module)."
        )


def load_model(directory: str, like: Any = None) -> tuple[Any, dict]:
    """A model directory's module and variables.

    The module is rebuilt from the directory's `arch` and `kwargs` (a zoo name or an import path);
    pass `like`, a model of the same architecture, where it cannot be: an NNX model (its values
    are then replaced by the directory's, and it is returned with them), or a linen module.
    """
    meta, variables = checkpoint.load_teacher(directory)
    if like is None:
        _refuse_nnx_directory(meta, directory)
    elif nnx_adapter.is_nnx(like):
        return nnx_adapter.to_nnx(like, variables), variables
    else:
        return like, variables
    module = models.create_model(
        meta["arch"], num_classes=meta["num_classes"], **meta.get("kwargs", {})
    )
    return module, variables


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """What `synthesize` returns (host arrays).

    Attributes:
      images: float32 [N, H, W, C] in [0, 1] (unnormalized, as a dataset's).
      labels: int32 [N], the teacher's class of each image.
      probabilities: float32 [N, K], the teacher's softmax.
      targets: int32 [N], the class the method aimed each image at, or None for a method
        without per-image targets (DAFL, DFQ: their images' classes are the teacher's alone) and
        for a segmentation teacher.
    """

    images: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray | None = None


def synthesize(
    teacher: Any,
    num_images: int,
    *,
    data: str | TestSplit,
    teacher_variables: dict | None = None,
    method: str | None = None,
    config: str | ml_collections.ConfigDict | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    warmup_calls: int = 0,
    workdir: str | None = None,
) -> Synthetic:
    """`num_images` synthetic images from `teacher` by `method`, with the teacher's labels.

    The method's synthesis calls run one after another (a meta-learned generator improves over
    them: `warmup_calls` first calls are discarded) with no student: the adversarial term is off.
    `data` gives the images' shape, classes and normalization (its test split is not read);
    `workdir` is only needed for a `TestSplit`. Other arguments as for `distill`.
    """
    if num_images < 1 or warmup_calls < 0:
        raise ValueError(f"num_images={num_images} must be >= 1, warmup_calls >= 0.")
    if isinstance(data, TestSplit) and workdir is None:
        raise ValueError("A TestSplit is written to a workdir: pass workdir.")
    dataset = _dataset_name(data, workdir or "")
    run_config = make_config(config, method, dataset, overrides)
    run_config.synthesis.adv = 0.0  # no student to disagree with
    _check_teacher_only_loss(run_config)
    if isinstance(teacher, str):
        module, variables = load_model(teacher)
    else:
        module, variables = given.as_linen(teacher, teacher_variables, "teacher")
    run_config.teacher.arch, run_config.teacher.kwargs, _ = given.label(module)
    run_config.pool.capacity = run_config.synthesis.batch_size
    train.validate(run_config)
    parts = components.build(run_config, teacher=(module, variables), student=(module, variables))
    keys = components.run_keys(seed)
    state = components.init_state(parts, keys)
    call, _ = parts.synthesizer.compile_call(
        state, parts.teacher_vars, keys["synthesis"], components.adv_array(0.0), mesh=parts.mesh
    )
    batch = run_config.synthesis.batch_size
    info = parts.info
    # The teacher's probabilities, batch by batch, on the batch's devices.
    score = jax.jit(
        lambda v, x: jax.nn.softmax(
            module.apply(v, augment.normalize(x, info.mean, info.std), train=False).astype(
                jnp.float32
            ),
            axis=-1,
        )
    )
    # The call draws its targets with this same function of its key; a segmentation teacher's
    # one-hot term ignores them (it aims at the teacher's own argmax per pixel).
    draw_targets = jax.jit(parts.synthesizer.draw_targets)
    per_image_targets = info.task == "classification"
    kept_images, kept_probabilities, kept_targets = [], [], []
    for c in range(warmup_calls + math.ceil(num_images / batch)):
        call_key = jax.random.fold_in(keys["synthesis"], c)
        state, images, _ = call(state, parts.teacher_vars, call_key, components.adv_array(0.0))
        if c >= warmup_calls:
            kept_images.append(np.asarray(sharding.to_host(images), np.float32))
            kept_probabilities.append(
                np.asarray(sharding.to_host(score(parts.teacher_vars, images)))
            )
            targets = draw_targets(call_key) if per_image_targets else None
            if targets is not None:
                kept_targets.append(np.asarray(targets, np.int32))
    images = np.concatenate(kept_images)[:num_images]
    probabilities = np.concatenate(kept_probabilities)[:num_images]
    return Synthetic(
        images,
        probabilities.argmax(-1).astype(np.int32),
        probabilities,
        np.concatenate(kept_targets)[:num_images] if kept_targets else None,
    )


def _check_teacher_only_loss(config: ml_collections.ConfigDict) -> None:
    """Refuses a method whose synthesis loss is the adversarial term alone (ZSKT): without a
    student it would return the untrained generator's images.
    """
    s = config.synthesis
    teacher_terms = [s.bn, s.oh]
    if s.method == "generative":
        teacher_terms += [s.generative.act, s.generative.balance]
    if not any(teacher_terms):
        raise ValueError(
            f"Method {config.method!r} synthesizes against a student only (its loss is the "
            "adversarial term alone): synthetic data without a student needs a method with a "
            "teacher term (BatchNorm statistics, one-hot, activation or balance), e.g. fast5."
        )
