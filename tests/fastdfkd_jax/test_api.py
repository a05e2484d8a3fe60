"""The Python API (`fastdfkd_jax.api`) on models defined here, not in the zoo: linen and NNX.

The NNX adapter against NNX's own calls, BatchNorm statistics of an NNX teacher, the NumPy-file
dataset, the refusals before compute; end to end (slow): a linen and an NNX pair distilled, the
exported student loaded and scored, synthetic data alone, the example.
"""

import dataclasses
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fastdfkd_jax import api, checks, data, models
from fastdfkd_jax.data import augment, npz
from fastdfkd_jax.models import given, nnx_adapter
from fastdfkd_jax.synthesis import generative, losses
from tests.conftest import CONFIGS, REPO

DIGITS_RUNLOCAL = os.path.join(CONFIGS, "dfkd_digits.py") + ":fast5,runlocal"
NO_CACHE = {"compilation_cache": False}


class LinenNet(nn.Module):
    """A user's linen classifier: conv-BN-ReLU, pooled, dense."""

    num_classes: int = 10
    width: int = 4

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Conv(self.width, (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class LinenNoBatchNorm(nn.Module):
    """A classifier without BatchNorm (refused by the BatchNorm-statistics methods)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        return nn.Dense(self.num_classes)(x.reshape(len(x), -1))


class NNXNet(nnx.Module):
    """A user's NNX classifier: the same layers as `LinenNet`."""

    def __init__(self, width: int = 4, num_classes: int = 10, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.head = nnx.List([nnx.Linear(width, num_classes, rngs=rngs)])

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        return self.head[0](x.mean(axis=(1, 2)))


def _images(n=6, seed=1):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, 8, 8, 1))


def test_an_nnx_model_reads_as_a_linen_module_and_back():
    model = NNXNet(rngs=nnx.Rngs(0))
    module, variables = nnx_adapter.from_nnx(model)
    assert set(variables) == {"params", "batch_stats"}
    assert variables["params"]["head"]["0"]["kernel"].shape == (4, 10)  # list index as a string
    x = _images()
    # Eval mode equals NNX's eval call; `init` gives the model's own values.
    model.eval()
    np.testing.assert_allclose(module.apply(variables, x, train=False), model(x), rtol=1e-6)
    init = module.init(jax.random.PRNGKey(9), x, train=False)
    jax.tree.map(np.testing.assert_array_equal, init, variables)
    # Train mode: the batch statistics update as NNX's own train call updates them.
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
    model.train()
    np.testing.assert_allclose(out, model(x), rtol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["bn"]["mean"], model.bn.mean.get_value())
    # Written back into another model of the same architecture: the same function.
    other = nnx_adapter.to_nnx(NNXNet(rngs=nnx.Rngs(5)), {**variables, **updates})
    other.eval()
    model.eval()
    np.testing.assert_array_equal(other(x), model(x))


def test_batchnorm_statistics_of_an_nnx_teacher():
    """The probes see an NNX teacher's BatchNorm inputs and running statistics, and its classifier
    input, as they see a linen teacher's.
    """
    model = NNXNet(rngs=nnx.Rngs(0))
    module, variables = nnx_adapter.from_nnx(model)
    variables["batch_stats"]["bn"]["mean"] = jnp.arange(4.0)
    x = _images()
    logits, records = jax.jit(lambda v, x: losses.capture_bn_inputs(module, v, x, train=False))(
        variables, x
    )
    conv_out = model.conv(x)
    assert len(records) == 1
    np.testing.assert_allclose(records[0].mean, conv_out.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(records[0].var, conv_out.var(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_array_equal(records[0].running_mean, jnp.arange(4.0))
    _, _, features = generative.capture_teacher(module, variables, x)
    assert features.shape == (6, 4)  # the input of the NNX classifier (nnx.Linear)


def test_a_numpy_file_is_a_dataset(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(size=(12, 8, 8, 1)), rng.integers(0, 3, 12)
    name = npz.write(
        str(tmp_path / "mine.npz"),
        test_images=images,
        test_labels=labels,
        num_classes=3,
        mean=(0.5,),
        std=(0.25,),
    )
    info = data.get_info(name)
    assert (info.image_shape, info.num_classes, info.mean, info.std) == (
        (8, 8, 1),
        3,
        (0.5,),
        (0.25,),
    )
    assert info.test_size == 12 and info.train_size == 0
    split = data.load_split(name, "test")
    np.testing.assert_array_equal(split["image"], images.astype(np.float32))
    np.testing.assert_array_equal(split["label"], labels)
    with pytest.raises(checks.UserInputError, match="has no train split"):
        data.load_split(name, "train")
    with pytest.raises(checks.UserInputError, match="no file"):
        data.get_info("npz:/nonexistent.npz")
    with pytest.raises(
        ValueError, match=r"test images in \[0\.07.*, 254\.8.*\]: expected \[0, 1\]"
    ):
        npz.write(str(tmp_path / "x.npz"), test_images=images * 255, test_labels=labels,
                  num_classes=3, mean=(0.5,), std=(0.25,))  # fmt: skip
    with pytest.raises(ValueError, match=r"labels in 0\.\.2, outside 0\.\.1"):
        npz.write(str(tmp_path / "x.npz"), test_images=images, test_labels=labels,
                  num_classes=2, mean=(0.5,), std=(0.25,))  # fmt: skip


def test_model_keyword_arguments_from_the_config():
    assert models.parse_kwargs("", "teacher.kwargs") == {}
    kwargs = models.parse_kwargs("{'width': 7}", "teacher.kwargs")
    model = models.create_model("tests.fastdfkd_jax.test_api:LinenNet", num_classes=10, **kwargs)
    assert isinstance(model, LinenNet) and model.width == 7
    with pytest.raises(ValueError, match=r"teacher.kwargs='width=7' is not a dict literal"):
        models.parse_kwargs("width=7", "teacher.kwargs")


def _linen(model, seed=0):
    return model, model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 1)), train=False)


@pytest.mark.parametrize(
    "teacher, student, message",
    [
        (
            _linen(LinenNoBatchNorm()),
            LinenNet(),
            r"Method 'fast5' .* needs the teacher's BatchNorm layers, but the teacher "
            r"'tests.fastdfkd_jax.test_api:LinenNoBatchNorm' has none",
        ),
        (
            _linen(LinenNet()),
            LinenNet(num_classes=7),
            "The student outputs 7 classes but digits has 10",
        ),
        (
            _linen(LinenNet()),
            NNXNet(rngs=nnx.Rngs(0)).__class__,  # a class, not a model
            "The student must be a Flax linen module, an NNX model or a model directory",
        ),
        ((LinenNet(), None), LinenNet(), "A linen teacher needs its variables"),
    ],
)
def test_models_refused_before_compute(tmp_path, teacher, student, message):
    module, variables = teacher
    with pytest.raises(ValueError, match=message):
        api.distill(module, student, teacher_variables=variables, workdir=str(tmp_path),
                    data="digits", config=DIGITS_RUNLOCAL, overrides=NO_CACHE)  # fmt: skip


def test_an_input_the_teacher_cannot_take_and_an_unknown_key_are_refused(tmp_path):
    class Flat(nn.Module):  # takes 28x28 images only
        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(10)(x.reshape(len(x), 28 * 28))

    variables = Flat().init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(
        ValueError, match=r"The teacher Flat does not accept images of shape \(8, 8, 1\)"
    ):
        api.distill(Flat(), LinenNet(), teacher_variables=variables, workdir=str(tmp_path),
                    data="digits", config=DIGITS_RUNLOCAL, overrides=NO_CACHE)  # fmt: skip
    with pytest.raises(ValueError, match="Unknown config key 'kd.stepz'"):
        api.distill(*_linen(LinenNet()), workdir=str(tmp_path), data="digits",
                    config=DIGITS_RUNLOCAL, overrides={"kd.stepz": 3})  # fmt: skip


def _digits_accuracy(apply):
    info, split = data.get_info("digits"), data.load_split("digits", "test")
    logits = apply(augment.normalize(jnp.asarray(split["image"]), info.mean, info.std))
    return float((np.asarray(logits).argmax(-1) == split["label"]).mean())


@pytest.mark.slow  # two runlocal distillations and a reuse of the student: about a minute
def test_linen_models_distilled_and_the_student_reused_as_a_teacher(tmp_path):
    teacher, teacher_vars = _linen(LinenNet(width=8))
    result = api.distill(teacher, LinenNet(width=3), teacher_variables=teacher_vars,
                         workdir=str(tmp_path / "a"), data="digits", config=DIGITS_RUNLOCAL,
                         overrides=NO_CACHE)  # fmt: skip
    summary = result.summary
    print("linen student accuracy", summary["student_test_accuracy"])
    meta = json.loads((tmp_path / "a" / "student" / "meta.json").read_text())
    assert meta["arch"] == "tests.fastdfkd_jax.test_api:LinenNet"
    assert meta["kwargs"] == {"width": 3}
    # The model directory loads by one call and scores what the run reported.
    module, variables = api.load_model(result.student_dir)
    assert isinstance(module, LinenNet) and module.width == 3
    accuracy = _digits_accuracy(lambda x: module.apply(variables, x, train=False))
    assert accuracy == pytest.approx(summary["student_test_accuracy"], abs=1e-6)
    # ... and is the next run's teacher, by its directory.
    again = api.distill(result.student_dir, "digits_cnn_tiny", workdir=str(tmp_path / "b"),
                        data="digits", config=DIGITS_RUNLOCAL, overrides=NO_CACHE)  # fmt: skip
    assert again.summary["teacher_test_accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.slow  # a runlocal distillation, its resume, a refusal: about 40 s
def test_nnx_models_distilled_resumed_and_another_student_refused(tmp_path):
    teacher = NNXNet(width=8, rngs=nnx.Rngs(0))
    arrays = data.load_split("digits", "test")
    info = data.get_info("digits")
    split = api.TestSplit(arrays["image"], arrays["label"], 10, info.mean, info.std)
    run = dict(workdir=str(tmp_path), data=split, config=DIGITS_RUNLOCAL, overrides=NO_CACHE)
    result = api.distill(teacher, NNXNet(width=3, rngs=nnx.Rngs(1)), **run)
    print("NNX student accuracy", result.summary["student_test_accuracy"])
    student = result.into(NNXNet(width=3, rngs=nnx.Rngs(2)))
    student.eval()
    accuracy = _digits_accuracy(student)
    assert accuracy == pytest.approx(result.summary["student_test_accuracy"], abs=1e-6)
    # The same call again finds its finished run; another student's initialization is refused.
    again = api.distill(teacher, NNXNet(width=3, rngs=nnx.Rngs(1)), **run)
    assert again.summary["resumed_from_epoch"] == again.summary["config"]["epochs"]
    with pytest.raises(
        checks.UserInputError, match=r"holds another run .*differs in student.initial_variables"
    ):
        api.distill(teacher, NNXNet(width=3, rngs=nnx.Rngs(7)), **run)
    with pytest.raises(ValueError, match="is an NNX 'tests.fastdfkd_jax.test_api:NNXNet'"):
        api.load_model(result.student_dir)


@pytest.mark.slow  # 40 synthesis calls of Fast-5 from the digits teacher: about 25 s
def test_synthetic_images_alone_from_the_digits_teacher():
    teacher = os.path.join(REPO, "results", "teachers", "digits")
    synthetic = api.synthesize(teacher, 256, data="digits", config=os.path.join(CONFIGS, "dfkd_digits.py"),
                               warmup_calls=10)  # fmt: skip
    assert synthetic.images.shape == (256, 8, 8, 1) and synthetic.images.dtype == np.float32
    assert np.isfinite(synthetic.images).all()
    assert 0.0 <= synthetic.images.min() and synthetic.images.max() <= 1.0
    np.testing.assert_array_equal(synthetic.labels, synthetic.probabilities.argmax(-1))
    # Images of the teacher's classes: every class made, most of them with confidence (93%
    # measured). Fast-5's five steps do not reach their targets (14% measured: the BN term
    # outweighs the one-hot term, docs/own_models.md), so the targets are checked with CMI below.
    assert synthetic.targets.shape == (256,) and synthetic.targets.dtype == np.int32
    assert set(synthetic.labels.tolist()) == set(range(10))
    assert (synthetic.probabilities.max(-1) > 0.5).mean() >= 0.85


@pytest.mark.slow  # 100 CMI steps for 64 images from the digits teacher: about a minute
def test_cmi_images_are_of_their_target_classes():
    teacher = os.path.join(REPO, "results", "teachers", "digits")
    synthetic = api.synthesize(teacher, 64, data="digits", method="cmi500",
                               config=os.path.join(CONFIGS, "dfkd_digits.py"),
                               overrides={"synthesis.cmi.steps": 100, "synthesis.batch_size": 64})  # fmt: skip
    assert np.isfinite(synthetic.images).all() and synthetic.images.shape == (64, 8, 8, 1)
    # The teacher assigns at least 90% of them to the classes they were made for (95.3% measured;
    # 78% after 50 steps).
    assert (synthetic.labels == synthetic.targets).mean() >= 0.9


@pytest.mark.slow  # the example itself: two teachers trained and distilled, about 2 minutes
def test_the_own_models_example(tmp_path):
    # As a user runs it: the machine's devices, not the test session's 8 simulated ones.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    run = subprocess.run([sys.executable, "examples/own_models.py", f"--workdir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if ": teacher" in line]
    assert [line.split(":")[0] for line in lines] == ["linen", "nnx"]
    for line in lines:
        teacher, student = (float(p.split()[-1].rstrip("%")) for p in line.split(",")[:2])
        assert teacher > 95 and student > 60, line


@pytest.mark.parametrize(
    "method",
    ["fast2", *(pytest.param(m, marks=pytest.mark.slow) for m in
                ("deepinv2k", "cmi500", "nayer", "fast_meta_latent"))],
)  # fmt: skip
def test_the_targets_returned_are_those_the_synthesis_loss_used(teacher_dir, monkeypatch, method):
    """`Synthetic.targets` are the classes the kept call's one-hot loss aimed at; the discarded
    first call aimed at others (each call draws its own), except NAYER's fixed class groups."""
    used = []
    one_hot_loss = losses.one_hot_loss

    def recording(logits, targets):
        jax.debug.callback(lambda t: used.append(np.asarray(t)), targets)
        return one_hot_loss(logits, targets)

    monkeypatch.setattr(losses, "one_hot_loss", recording)
    overrides = {"synthesis.batch_size": 10}
    if method == "fast_meta_latent":  # the ImageNet synthesizer, on digits
        method, overrides["synthesis.method"] = "fast2", "fast_meta_latent"
    synthetic = api.synthesize(teacher_dir, 10, data="digits", warmup_calls=1,
                               config=f"{CONFIGS}/dfkd_digits.py:{method},runlocal",
                               overrides=overrides)  # fmt: skip
    assert synthetic.targets.shape == (10,) and synthetic.targets.dtype == np.int32
    np.testing.assert_array_equal(synthetic.targets, used[-1])
    fixed_groups = method == "nayer"
    assert np.array_equal(used[0], used[-1]) == fixed_groups


@pytest.mark.slow  # a DAFL runlocal synthesis: about 10 s
def test_a_method_without_targets_returns_none(teacher_dir):
    config = os.path.join(CONFIGS, "dfkd_digits.py:dafl,runlocal")
    synthetic = api.synthesize(teacher_dir, 4, data="digits", config=config)
    assert synthetic.targets is None and synthetic.images.shape == (4, 8, 8, 1)


def test_the_synthesize_command_writes_npz_and_png_folders(tmp_path):
    from PIL import Image

    from tests.conftest import load_script

    script = load_script("synthesize")
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    labels = probabilities.argmax(-1).astype(np.int32)
    targets = np.array([labels[0], labels[1], (labels[2] + 1) % 3, labels[3], labels[4]], np.int32)
    synthetic = api.Synthetic(
        rng.uniform(size=(5, 4, 4, 1)).astype(np.float32), labels, probabilities, targets
    )
    script.write_npz(str(tmp_path / "s.npz"), synthetic)
    with np.load(tmp_path / "s.npz") as f:
        np.testing.assert_array_equal(f["images"], synthetic.images)
        np.testing.assert_array_equal(f["labels"], synthetic.labels)
        np.testing.assert_array_equal(f["targets"], targets)
    script.write_folder(str(tmp_path / "png"), synthetic)
    rows = (tmp_path / "png" / "labels.csv").read_text().splitlines()[1:]
    assert len(rows) == 5
    name, label, _, target = rows[2].split(",")
    assert int(label) == synthetic.labels[2] and name.startswith(f"{label}/")
    assert int(target) == targets[2]
    assert script.describe(synthetic).endswith("the teacher's class is the target for 80.0%")
    without = dataclasses.replace(synthetic, targets=None)
    script.write_npz(str(tmp_path / "t.npz"), without)
    assert "targets" not in np.load(tmp_path / "t.npz")
    assert "target" not in script.describe(without)
    pixels = np.asarray(Image.open(tmp_path / "png" / name))
    np.testing.assert_array_equal(pixels, np.round(synthetic.images[2, ..., 0] * 255))


class NNXWithDropout(NNXNet):
    def __init__(self, *, rngs: nnx.Rngs):
        super().__init__(rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(super().__call__(x))


def test_nnx_random_state_is_copied_per_call_and_refused_in_a_student(tmp_path):
    """A Dropout's key counter is the model's kept state: each call starts from a copy (jitted
    calls do not mutate state across traces); a student holding it is refused by name."""
    model = NNXWithDropout(rngs=nnx.Rngs(0))
    module, variables = nnx_adapter.from_nnx(model)
    step = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0])
    first, again = step(variables, _images()), step(variables, _images())
    np.testing.assert_array_equal(first, again)  # the same kept key each call
    assert nnx_adapter.random_state(model) == ["drop/rngs/count", "drop/rngs/key"]
    with pytest.raises(ValueError, match=r"The NNX student NNXWithDropout holds random state"):
        api.distill(
            LinenNet(), model, teacher_variables=_linen(LinenNet())[1], workdir=str(tmp_path),
            data="digits", config=DIGITS_RUNLOCAL,
        )  # fmt: skip


def test_variables_written_into_an_nnx_model_are_checked():
    _, variables = nnx_adapter.from_nnx(NNXNet(width=4, rngs=nnx.Rngs(0)))
    with pytest.raises(
        ValueError, match=r"params/bn/bias has shape \(4,\); this NNXNet needs \(6,\)"
    ):
        nnx_adapter.to_nnx(NNXNet(width=6, rngs=nnx.Rngs(0)), variables)
    del variables["params"]["head"]
    with pytest.raises(ValueError, match="The variables have no params/head/0/bias"):
        nnx_adapter.to_nnx(NNXNet(width=4, rngs=nnx.Rngs(0)), variables)


def test_a_config_files_method_stands_and_labels_tell_models_apart():
    deepinv = os.path.join(CONFIGS, "dfkd_digits.py") + ":deepinv2k"
    assert api.make_config(deepinv, None, "digits", None).synthesis.method == "deepinversion"
    assert api.make_config(deepinv, "fast2", "digits", None).method == "fast2"
    assert api.make_config(None, None, "digits", None).method == api.DEFAULT_METHOD
    assert given.label(LinenNet(width=3)) != given.label(LinenNet(width=5))
    arch, kwargs, complete = given.label(LinenNet(width=3))
    assert (arch, models.parse_kwargs(kwargs, "k"), complete) == (
        "tests.fastdfkd_jax.test_api:LinenNet",
        {"width": 3},
        True,
    )

    class WithActivation(LinenNet):
        act: object = nn.relu

    _, kwargs, complete = given.label(WithActivation(width=3))
    assert models.parse_kwargs(kwargs, "k") == {"width": 3} and not complete


def test_test_splits_count_by_content(tmp_path):
    info = data.get_info("digits")
    arrays = data.load_split("digits", "test")
    split = api.TestSplit(arrays["image"], arrays["label"], 10, info.mean, info.std)
    name = api._dataset_name(split, str(tmp_path))
    assert api._dataset_name(split, str(tmp_path)) == name  # the same file again
    relabelled = api.TestSplit(arrays["image"], (arrays["label"] + 1) % 10, 10, info.mean, info.std)
    other = api._dataset_name(relabelled, str(tmp_path))
    assert other != name and os.path.exists(name[len(npz.PREFIX) :])
    assert npz.content_name(name) != npz.content_name(other)
    moved = tmp_path / "moved.npz"
    moved.write_bytes(open(name[len(npz.PREFIX) :], "rb").read())
    assert npz.content_name(f"{npz.PREFIX}{moved}") == npz.content_name(name)


def test_synthesis_alone_refuses_a_method_without_a_teacher_term():
    with pytest.raises(ValueError, match="Method 'zskt' synthesizes against a student only"):
        api.synthesize(*_linen(LinenNet())[:1], 8, teacher_variables=_linen(LinenNet())[1],
                       data="digits", config=os.path.join(CONFIGS, "dfkd_digits.py:zskt"))  # fmt: skip


def test_a_model_directory_gives_its_kwargs_and_normalization(tmp_path):
    from fastdfkd_jax import checkpoint, components
    from tests.conftest import load_config

    model = models.create_model("tests.fastdfkd_jax.test_api:LinenNet", num_classes=10, width=5)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
    info = data.get_info("digits")
    checkpoint.save_teacher(str(tmp_path), variables, arch="tests.fastdfkd_jax.test_api:LinenNet",
                            num_classes=10, dataset="digits", image_shape=(8, 8, 1),
                            kwargs={"width": 5}, mean=info.mean, std=info.std)  # fmt: skip
    config = load_config("dfkd_digits.py:fast5,runlocal")
    config.teacher.arch = "tests.fastdfkd_jax.test_api:LinenNet"
    teacher, _ = components.load_teacher(config, info, str(tmp_path))  # kwargs from meta.json
    assert teacher.width == 5
    config.teacher.kwargs = "{'width': 4}"
    with pytest.raises(ValueError, match=r"teacher.kwargs=\"\{'width': 4\}\", but .* made with"):
        components.load_teacher(config, info, str(tmp_path))
    config.teacher.kwargs = ""
    import dataclasses

    with pytest.raises(ValueError, match=r"normalized with mean \[0.30"):
        components.load_teacher(config, dataclasses.replace(info, mean=(0.5,)), str(tmp_path))
