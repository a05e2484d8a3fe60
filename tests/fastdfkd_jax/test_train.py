"""End to end: the data-free run and the teacher job on tiny configs (digits, real data)."""

import dataclasses
import json
import os
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fastdfkd_jax import (
    backend,
    checkpoint,
    compilation,
    components,
    data,
    distill,
    main,
    models,
    preemption,
    sharding,
    synthesis,
    timing,
    train,
)
from fastdfkd_jax import epoch as epoch_lib
from fastdfkd_jax import (
    metric_files as metrics,
)
from fastdfkd_jax.epoch_progress import EpochProgress
from fastdfkd_jax.synthesis import base as synthesis_base
from fastdfkd_jax.synthesis import losses
from fastdfkd_jax.synthesis.objective import init_bn_memory
from tests.conftest import load_config, save_random_teacher

# Tiny models: compile time dominates, so compile without most optimizations (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


def parts_of(config):
    """The run's components (for `epoch_lib.within_epoch_step`)."""
    return components.build(config)


def tiny_config(teacher_dir, method="fast2"):
    config = load_config(f"dfkd_digits.py:{method},runlocal")
    config.teacher.checkpoint = teacher_dir
    return config


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def final_state(workdir, config):
    """The run's last checkpoint, read back without a target."""
    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.StandardRestore())
    manager.close()
    return step, restored


def test_fast_run_end_to_end_and_resume(fitted_teacher_dir, tmp_path, monkeypatch):
    config = tiny_config(fitted_teacher_dir)
    # Enough distillation for the student's predictions to move off its initial single class
    # (at T = 20 and 2 steps per epoch they do not), so its accuracy is informative.
    config.kd.temperature = 4.0
    config.kd.steps = 8
    # Every step function is traced exactly once for the whole run.
    chex.clear_trace_counter()
    monkeypatch.setattr(
        synthesis_base,
        "synthesis_call",
        chex.assert_max_traces(synthesis_base.synthesis_call, n=1),
    )
    monkeypatch.setattr(distill, "kd_step", chex.assert_max_traces(distill.kd_step, n=1))
    full_dir = str(tmp_path / "full")
    summary = main.run(config, full_dir)
    monkeypatch.undo()

    for key in (
        "teacher_test_accuracy",
        "student_test_accuracy",
        "synthesis_seconds",
        "compile_seconds",
        "kd_seconds",
        "total_seconds",
        "other_seconds",
        "init_seconds",
        "eval_compile_seconds",
        "compile_cpu_seconds",
        "method",
        "g_steps",
        "meta_gradient",
    ):
        assert key in summary, key
    assert summary["method"] == "fast2" and summary["g_steps"] == 2
    # The backend's choices for the 'auto' keys, and the policy, are recorded.
    assert summary["precision"] == "tensorfloat32"
    assert summary["backend_choices"] == backend.choices(config, jax.default_backend())
    phases = sum(summary[f"{k}_seconds"] for k in ("synthesis", "kd", "eval", "compile", "other"))
    assert phases == pytest.approx(summary["total_seconds"])
    # "other" has three parts apart; set-up includes restoring the state (init).
    parts_of_other = [summary[f"{k}_seconds"] for k in ("setup", "checkpoint", "drain")]
    assert all(p > 0 for p in parts_of_other)
    assert sum(parts_of_other) <= summary["other_seconds"]
    # Making the state compiles it on first call: that part of init is compilation, not set-up.
    compiles = [summary[f"{k}_compile_seconds"] for k in ("init", "synthesis", "kd", "eval")]
    assert summary["compile_seconds"] == pytest.approx(sum(compiles))
    assert 0 < summary["init_compile_seconds"] < summary["init_seconds"]
    assert summary["setup_seconds"] >= summary["init_seconds"] - summary["init_compile_seconds"]
    # Every compilation went to the persistent cache ...
    cache = jax.config.jax_compilation_cache_dir
    assert cache and cache.startswith(os.environ[compilation.CACHE_ENV])
    entries = set(os.listdir(cache))
    assert entries
    assert summary["meta_gradient"] == "first_order"
    assert summary["teacher_test_accuracy"] > 0.7  # the fixture's least-squares head: 76%
    assert summary["synthesis_seconds"] > 0 and summary["compile_seconds"] > 0
    with open(os.path.join(full_dir, "summary.json")) as f:
        assert json.load(f)["method"] == "fast2"
    records = metrics.read_metrics(full_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert "kd_loss" not in records[0] and "kd_loss" in records[1]  # warmup: no KD
    # The student's learning rate at its last step: the cosine schedule over 2 KD epochs.
    assert records[2]["learning_rate"] < records[1]["learning_rate"]
    assert os.listdir(os.path.join(full_dir, metrics.TENSORBOARD_DIR))
    assert os.path.exists(os.path.join(full_dir, "samples_0002.png"))

    # Kill a second run right after its epoch-2 checkpoint, then rerun: same end state.
    killed_dir = str(tmp_path / "killed")
    original_save = checkpoint.save

    def save_then_die(manager, step, state):
        original_save(manager, step, state)
        if step == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main.run(config, killed_dir)
    monkeypatch.undo()
    killed_at = metrics.read_metrics(killed_dir)[-1]  # epoch 2's record, by the killed process
    resumed = main.run(config, killed_dir)
    # ... and the runs of the same config after the first one compiled nothing new.
    assert set(os.listdir(cache)) == entries
    assert resumed["resumed_from_epoch"] == 2
    resumed_records = metrics.read_metrics(killed_dir)
    assert [r["epoch"] for r in resumed_records] == [1, 2, 3]
    # The clocks go on from the killed process's last record: its total and phases are the run's.
    assert killed_at["run_seconds"] < resumed_records[2]["run_seconds"] < resumed["total_seconds"]
    for phase in ("synthesis", "kd", "eval"):
        assert killed_at[f"{phase}_seconds"] < resumed[f"{phase}_seconds"]
    step_a, state_a = final_state(full_dir, config)
    step_b, state_b = final_state(killed_dir, config)
    assert step_a == step_b == 3
    for a, b in zip(leaves(state_a), leaves(state_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert resumed["student_test_accuracy"] == summary["student_test_accuracy"]
    # A preemption notice after epoch 1 (between checkpoints: every 2 epochs here): the run saves
    # epoch 1 and stops; the rerun resumes there and ends with the uninterrupted run's state.
    preempted_dir = str(tmp_path / "preempted")
    sparse = ml_collections.ConfigDict(config.to_dict())
    sparse.checkpoint.every_epochs = 2
    original_epoch = epoch_lib.train_epoch

    def epoch_then_notice(parts, steps, state, keys, epoch, timer, **kwargs):
        out = original_epoch(parts, steps, state, keys, epoch, timer, **kwargs)
        if epoch == 0:
            preemption.notify()
        return out

    monkeypatch.setattr(epoch_lib, "train_epoch", epoch_then_notice)
    with pytest.raises(preemption.Preempted, match="saved epoch 1"):
        main.run(sparse, preempted_dir)
    monkeypatch.undo()
    assert not os.path.exists(os.path.join(preempted_dir, "summary.json"))
    after_notice = main.run(sparse, preempted_dir)
    assert after_notice["resumed_from_epoch"] == 1
    for a, c in zip(leaves(state_a), leaves(final_state(preempted_dir, config)[1]), strict=True):
        np.testing.assert_array_equal(a, c)
    # Notices inside epochs (an epoch: 1 synthesis call, then 8 student step calls): after the
    # 4th unit of epoch 2, and after its 7th when resumed. Each saves there and stops; the last
    # rerun ends with the uninterrupted run's state and metrics, bit for bit (timings aside).
    within_dir = str(tmp_path / "within")
    parts = parts_of(config)
    for stop_after in ((2, 4), (2, 7)):
        stop_step = epoch_lib.within_epoch_step(parts, *stop_after)

        class NoticeInside(preemption.Watch):
            def should_stop(self, step, stop_step=stop_step):
                super().should_stop(step)
                return step == stop_step

        monkeypatch.setattr(preemption, "Watch", NoticeInside)
        with pytest.raises(
            preemption.Preempted, match=rf"saved {stop_after[1]} units into epoch 3"
        ):
            main.run(sparse, within_dir)
        monkeypatch.undo()
    within_checkpoints = os.path.join(within_dir, checkpoint.WITHIN_EPOCH_CHECKPOINTS)
    assert sorted(os.listdir(within_checkpoints), key=int) == ["24", "27"]  # epoch 2 x 10 + units
    within_manager = checkpoint.make_manager(within_dir, 2, checkpoint.WITHIN_EPOCH_CHECKPOINTS)
    saved_at = EpochProgress.from_json(checkpoint.metadata_of(within_manager, 27))
    within_manager.close()
    within_summary = main.run(sparse, within_dir)
    assert 0 < saved_at.run_seconds < within_summary["total_seconds"]
    assert 0 < saved_at.seconds["kd"] < within_summary["kd_seconds"]
    assert os.listdir(within_checkpoints) == ["27"]  # the one it resumed past: deleted
    assert within_summary["resumed_from_epoch"] == 2
    assert within_summary["resumed_after_units"] == 7
    for a, c in zip(leaves(state_a), leaves(final_state(within_dir, config)[1]), strict=True):
        np.testing.assert_array_equal(a, c)

    def untimed(records):
        return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]

    assert untimed(metrics.read_metrics(within_dir)) == untimed(records)
    # The distilled student is a model directory, loadable as the next run's teacher.
    meta, student_vars = checkpoint.load_teacher(
        os.path.join(full_dir, train.STUDENT_DIR), arch=config.student.arch, num_classes=10
    )
    assert meta["image_shape"] == [8, 8, 1] and meta["dataset"] == "digits"
    for a, b in zip(leaves(student_vars["params"]), leaves(state_a["student"]["params"])):
        np.testing.assert_array_equal(a, b)
    # Best over the evaluated epochs (the original's reported number), also after a resume.
    accuracies = [r["student_test_accuracy"] for r in records]
    assert summary["student_best_test_accuracy"] == max(accuracies)
    assert summary["student_best_epoch"] == 1 + int(np.argmax(accuracies))
    assert resumed["student_best_test_accuracy"] == summary["student_best_test_accuracy"]
    # The record names what made it and its fingerprint; the resume had the same one.
    assert resumed["fingerprint"] == summary["fingerprint"]
    assert summary["environment"]["platform"] == jax.default_backend()
    assert summary["environment"]["packages"]["jax"] == jax.__version__
    # The same workdir with another setting that decides the result: refused before any compute,
    # naming the key (it would otherwise resume the finished run and report it as this one).
    other = load_config("dfkd_digits.py:fast2,runlocal")
    other.teacher.checkpoint, other.kd.steps = config.teacher.checkpoint, config.kd.steps
    monkeypatch.setattr(components, "init_state", lambda *a: pytest.fail("computed"))
    with pytest.raises(ValueError, match=r"holds another run .*kd\.temperature"):
        train.train_and_evaluate(other, killed_dir)
    monkeypatch.undo()
    # The reported accuracy is the FINAL student's on the whole test split: recomputed here in one
    # plain forward pass from the last checkpoint (no batching, padding or sharding).
    expected = recomputed_accuracy(config, state_a["student"])
    assert summary["student_test_accuracy"] == pytest.approx(expected, abs=1e-9)
    # ... and not that of the student the run started from (the KD steps changed its predictions).
    initial = models.create_model(config.student.arch, num_classes=10).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False
    )
    assert not np.array_equal(predictions(config, state_a["student"]), predictions(config, initial))


def predictions(config, student_variables) -> np.ndarray:
    """Argmax predictions [N] of a digits student on the whole test split, one forward pass."""
    info = data.get_info("digits")
    test = data.load_split("digits", "test")
    model = models.create_model(config.student.arch, num_classes=info.num_classes)
    variables = {k: student_variables[k] for k in ("params", "batch_stats")}
    inputs = (test["image"] - np.asarray(info.mean)) / np.asarray(info.std)
    return np.asarray(jnp.argmax(model.apply(variables, inputs, train=False), -1))


def recomputed_accuracy(config, student_variables) -> float:
    labels = data.load_split("digits", "test")["label"]
    return float(np.mean(predictions(config, student_variables) == labels))


def test_deepinversion_chunked_equals_one_function(teacher_dir):
    """The host-driven unrolled chunks compute what the single scanned function computes."""
    config = tiny_config(teacher_dir, "deepinv2k")
    config.synthesis.deepinversion.steps = 4
    config.synthesis.deepinversion.chunk_steps = "2"
    info = data.get_info("digits")
    teacher, tv = components.load_teacher(config, info)
    student = models.create_model("digits_cnn_tiny", num_classes=10)
    sv = student.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 1)), train=False)
    synth = components.build(config, teacher=(teacher, tv)).synthesizer
    memory = init_bn_memory(synth.objective, tv, info.image_shape)
    rng, adv = jax.random.PRNGKey(2), jnp.float32(1.0)
    _, _, images, metrics = jax.jit(synth.synthesize)({}, memory, tv, sv, rng, adv)
    carry = synth.begin({}, rng, tv)
    for first in (0, 2):
        carry = synth.advance(carry, memory, tv, sv, adv, first, 2, unroll=True)
    _, _, images2, metrics2 = synth.finish({}, carry, memory)
    np.testing.assert_allclose(images, images2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["synth_best_loss"], metrics2["synth_best_loss"], rtol=1e-5)


def test_teacher_job_trains_and_resumes(tmp_path, monkeypatch):
    config = load_config("teacher_digits.py:runlocal")
    workdir = str(tmp_path / "teacher")
    summary = main.run(config, workdir)
    assert summary["test_accuracy"] > 0.3  # two epochs of a 1.4k-parameter CNN: well above chance
    assert summary["steps"] == 2 * (1437 // config.train.batch_size)
    meta, variables = checkpoint.load_teacher(os.path.join(workdir, "teacher"))
    info = data.get_info("digits")  # the directory records the normalization its inputs take
    assert meta == dict(
        arch="digits_cnn_tiny",
        num_classes=10,
        dataset="digits",
        image_shape=[8, 8, 1],
        mean=list(info.mean),
        std=list(info.std),
    )
    # Rerunning a finished run resumes at its end and reports the same accuracy.
    again = main.run(config, workdir)
    assert again["test_accuracy"] == summary["test_accuracy"]
    assert len(metrics.read_metrics(workdir)) == 2
    # A preemption notice after epoch 1's last step, and one 3 steps into epoch 2 (the watch is
    # asked after each step): each saves there and stops; the rerun ends as the first run, its
    # weights and metrics bit for bit (timings aside).
    steps_per_epoch = 1437 // config.train.batch_size
    config.checkpoint.every_epochs = 5
    for stop_at, message in ((steps_per_epoch, "saved epoch 1"),
                             (steps_per_epoch + 3, "saved 3 units into epoch 2")):  # fmt: skip
        preempted = str(tmp_path / f"preempted_{stop_at}")

        class Notice(preemption.Watch):
            def should_stop(self, step, stop_at=stop_at):
                return step == stop_at

        monkeypatch.setattr(preemption, "Watch", Notice)
        with pytest.raises(preemption.Preempted, match=message):
            main.run(config, preempted)
        monkeypatch.undo()
        before = metrics.read_metrics(preempted)[-1]  # epoch 1's record
        resumed = main.run(config, preempted)
        assert resumed["test_accuracy"] == summary["test_accuracy"]
        assert resumed["steps"] == summary["steps"]
        assert resumed["resumed_from_step"] == stop_at and summary["resumed_from_step"] is None
        # The training clock goes on from where the stopped run left it.
        assert 0 < before["train_seconds"] < resumed["train_seconds"]
        _, again = checkpoint.load_teacher(os.path.join(preempted, "teacher"))
        for a, b in zip(leaves(again), leaves(variables), strict=True):
            np.testing.assert_array_equal(a, b)
        untimed = [[{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]
                   for records in (metrics.read_metrics(preempted), metrics.read_metrics(workdir))]  # fmt: skip
        assert untimed[0] == untimed[1]


class CifarOnly(nn.Module):
    """A classifier hard-wired to 32x32x3 inputs."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, *, train: bool):
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], 32 * 32 * 3))


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(teacher_arch="digits_cnn_small"), "is a 'digits_cnn_tiny', but the config asks for"),
        (
            dict(g_steps=0),
            r"synthesis.fast.g_steps=0 is out of range: it must be an integer >= 1\.",
        ),
        (dict(meta_gradient="second"), "Unknown synthesis.fast.meta_gradient 'second'"),
        (dict(student_arch="cifar_only"), "does not accept images of shape"),
        (dict(student_arch="nope"), "digits_cnn_tiny"),
        (
            dict(dataset="fashion_mnist"),
            r"trained on \(8, 8, 1\) images \(digits\), but fashion_mnist",
        ),
        (
            dict(method="magic"),
            "Unknown synthesis method 'magic'; choose one of "
            r"\('fast', 'deepinversion', 'cmi', 'generative', 'fast_meta_latent', 'nayer'\)",
        ),
        (dict(adv_start="later"), "Unknown synthesis.adv_start 'later'"),
        (dict(strategy="greedy"), "Unknown synthesis.fast.strategy 'greedy'"),
        (
            dict(kd_per_round=3),
            r"kd.steps=2 must be a multiple of the student steps after each synthesis call \(3: "
            r"synthesis.generative.kd_steps_per_round\)",
        ),
        (dict(mesh=64), "mesh.data=64 asks for more devices than the"),
        (dict(eval_every=0), "eval_every_epochs=0 is out of range: it must be an integer >= 1"),
        (
            dict(precision="fp16"),
            "Unknown precision 'fp16'; choose one of highest, tensorfloat32, bfloat16",
        ),
        (dict(unroll="maybe"), "synthesis.fast.unroll='maybe' must be 'auto', 'true' or 'false'"),
        (
            dict(per_call="3"),
            r"kd.steps_per_call=3 must divide the student steps per synthesis call \(2\)",
        ),
    ],
)
def test_bad_input_fails_before_compute(teacher_dir, tmp_path, override, message, monkeypatch):
    monkeypatch.setitem(models.MODELS, "cifar_only", CifarOnly)
    config = tiny_config(teacher_dir)
    if "teacher_arch" in override:
        config.teacher.arch = override["teacher_arch"]
    if "g_steps" in override:
        config.synthesis.fast.g_steps = override["g_steps"]
    if "meta_gradient" in override:
        config.synthesis.fast.meta_gradient = override["meta_gradient"]
    if "student_arch" in override:
        config.student.arch = override["student_arch"]
    if "dataset" in override:
        config.dataset.name = override["dataset"]
        config.teacher.arch = "digits_cnn_tiny"
    if "method" in override:
        config.synthesis.method = override["method"]
    if "adv_start" in override:
        config.synthesis.adv_start = override["adv_start"]
    if "strategy" in override:
        config.synthesis.fast.strategy = override["strategy"]
    if "kd_per_round" in override:
        config.synthesis.method = "generative"
        config.synthesis.generative.kd_steps_per_round = override["kd_per_round"]
    if "mesh" in override:
        config.mesh.data = override["mesh"]
    if "eval_every" in override:
        config.eval_every_epochs = override["eval_every"]
    if "precision" in override:
        config.precision = override["precision"]
    if "unroll" in override:
        config.synthesis.fast.unroll = override["unroll"]
    if "per_call" in override:
        config.kd.steps_per_call = override["per_call"]
    with pytest.raises(ValueError, match=message):
        main.run(config, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))


def test_batch_that_does_not_divide_the_mesh_fails_before_compute(teacher_dir):
    config = tiny_config(teacher_dir)
    config.mesh.data, config.synthesis.batch_size = 8, 12
    mesh = sharding.make_mesh(config.mesh, devices=jax.devices("cpu"))  # 8 simulated devices
    with pytest.raises(
        ValueError, match="synthesis.batch_size=12 does not divide by the data axis"
    ):
        components.build(config, mesh)


def test_an_eval_batch_that_does_not_divide_the_mesh_fails_before_compute(
    teacher_dir, tmp_path, monkeypatch
):
    """The test split loads beside compilation; its batch is still checked before any compute."""
    config = tiny_config(teacher_dir)
    config.mesh.data = 8
    config.synthesis.batch_size = config.kd.batch_size = config.pool.capacity = 16
    config.eval_batch_size = 12

    def no_compute(*args, **kwargs):
        raise AssertionError("the state was built before the eval batch was checked")

    monkeypatch.setattr(components, "init_state", no_compute)
    with pytest.raises(ValueError, match="eval_batch_size=12 does not divide by the data axis"):
        main.run(config, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))


def test_several_kd_steps_per_call_equal_one_per_call(teacher_dir):
    """4 steps in one compiled call (unrolled: CPU; lax.scan: accelerators) leave the state that
    4 calls of one step leave: the same keys, the same arithmetic, up to XLA's fusion choices."""
    config = tiny_config(teacher_dir)
    parts = components.build(config)
    keys = components.run_keys(config.seed)
    pool_images = jax.random.uniform(jax.random.PRNGKey(5), (64, *parts.info.image_shape))
    results = {}
    for label, num_steps, unroll in (("one", 1, True), ("unrolled", 4, True), ("scan", 4, False)):
        state = components.init_state(parts, keys, pool_images=pool_images)
        fn, _ = distill.compile_kd_steps(
            state,
            parts.teacher_vars,
            keys["kd"],
            mesh=parts.mesh,
            num_steps=num_steps,
            unroll=unroll,
            donate=False,
            **components.kd_step_options(parts),
        )
        loss = 0.0
        for first in range(0, 4, num_steps):
            state, m = fn(state, parts.teacher_vars, keys["kd"], np.int32(first))
            loss += float(m["kd_loss"])
        results[label] = (jax.device_get(state.student), loss)
    for label in ("unrolled", "scan"):
        for a, b in zip(leaves(results[label][0]), leaves(results["one"][0]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert results[label][1] == pytest.approx(results["one"][1], rel=1e-5)


class NoBatchNorm(nn.Module):
    """A digits classifier without BatchNorm (a conv and a linear head)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


@pytest.mark.parametrize("method", ["fast5", "deepinv2k", "cmi500", "dfq", "dafl"])
def test_batchnorm_methods_refuse_a_teacher_without_batchnorm(method, tmp_path, monkeypatch):
    monkeypatch.setitem(models.MODELS, "no_bn", NoBatchNorm)
    teacher = save_random_teacher(str(tmp_path / "teacher"), "no_bn", "digits", (8, 8, 1), 10)
    config = tiny_config(teacher, method)
    config.teacher.arch = "no_bn"
    if method == "dafl":  # no BN-statistics loss: it builds (DAFL reads the teacher's Dense input)
        assert components.build(config).synthesizer.rounds_per_epoch == 2
        return
    compiled = []
    monkeypatch.setattr(
        compilation, "aot_compile", lambda *a, **k: compiled.append(1) or (None, 0.0)
    )
    with pytest.raises(ValueError, match=f"Method '{method}' .* the teacher 'no_bn' has none"):
        main.run(config, str(tmp_path / "run"))
    assert not compiled and not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_epoch_hook_runs_before_the_epochs_first_synthesis_call(teacher_dir):
    """reset_l0 at `reset_l0_epoch` E: the generator that epoch E's first call receives is the
    reset one (the original resets before its (E+1)-th call), and no other epoch's is."""
    config = tiny_config(teacher_dir, "fast2")
    config.synthesis.fast.reset_l0_epoch = 1
    parts = components.build(config)
    keys = components.run_keys(config.seed)
    state = components.init_state(parts, keys)
    seen = []

    def spy(state, teacher_vars, rng, adv):
        seen.append(state.synthesizer.params)
        return state, jnp.zeros((config.synthesis.batch_size, 8, 8, 1)), {"x": jnp.zeros(())}

    steps = epoch_lib.Steps(spy, lambda s, t, k, f: (s, {"kd_loss": jnp.zeros(())}), 1, 0.0, 0.0)
    timer = timing.PhaseTimer()
    for epoch in range(3):
        state = epoch_lib.train_epoch(parts, steps, state, keys, epoch, timer).state
    start = jax.random.fold_in(keys["epoch_start"], 1)
    want = parts.synthesizer.start_epoch(
        parts.synthesizer.init(keys["synthesizer_init"]), 1, start
    ).params
    np.testing.assert_array_equal(seen[1]["l1"]["kernel"], want["l1"]["kernel"])
    np.testing.assert_array_equal(seen[1]["bn0"]["scale"], want["bn0"]["scale"])
    assert not np.array_equal(seen[0]["l1"]["kernel"], seen[1]["l1"]["kernel"])
    np.testing.assert_array_equal(seen[1]["l1"]["kernel"], seen[2]["l1"]["kernel"])
    # Resumed inside epoch 1 after its synthesis call: the hook is not applied again.
    before = components.init_state(parts, keys)
    inside = EpochProgress(1, 1, {}, {}, {})
    after = epoch_lib.train_epoch(parts, steps, before, keys, 1, timer, resume=inside).state
    np.testing.assert_array_equal(
        after.synthesizer.params["l1"]["kernel"], before.synthesizer.params["l1"]["kernel"]
    )
    assert int(after.epoch) == int(before.epoch) + 1


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(teacher_dir, tmp_path):
    config = tiny_config(teacher_dir)
    config.epochs = 4
    config.kd.optimizer.learning_rate = 1e30  # the student diverges as soon as KD starts
    config.kd.optimizer.schedule = "constant"
    with pytest.raises(FloatingPointError, match=r"kd_loss became .* at epoch \d"):
        main.run(config, str(tmp_path))
    manager = checkpoint.make_manager(str(tmp_path), 2)
    assert manager.latest_step() == 1  # the warmup epoch, saved before KD went bad
    manager.close()


@dataclasses.dataclass(frozen=True)
class CountingSynthesizer(synthesis.PoolSynthesis):
    """A toy method on the `Synthesizer` interface: its state is a level that each synthesis call
    raises by 0.1, its images are that level, and the student's KD batches are fresh "samples"
    of its state (not pool draws), two rounds per epoch, as a generative method would do."""

    batch_size: int
    image_shape: tuple
    adv: float = 0.0
    adv_start_epoch: int = 0
    rounds_per_epoch: int = 2

    def init(self, rng):
        return {"level": jnp.zeros(())}

    def init_bn_memory(self, teacher_vars, image_shape):
        return losses.init_bn_memory([])  # no BN statistics loss: an empty memory

    def synthesize(self, state, bn_memory, teacher_vars, student_vars, rng, adv_weight):
        level = state["level"] + 0.1
        images = jnp.full((self.batch_size, *self.image_shape), level)
        return {"level": level}, bn_memory, images, {"synth_level": level}

    def kd_images(self, state, rng, batch_size):
        return jnp.full((batch_size, *self.image_shape), state.synthesizer["level"])


def build_counting(config, info, teacher, student, batch_sharding=None):
    return CountingSynthesizer(
        batch_size=config.synthesis.batch_size,
        image_shape=tuple(info.image_shape),
    )


def test_a_registered_method_runs_in_the_trainer_unchanged(teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(
        synthesis.SYNTHESIZERS, "counting", synthesis.Method(build_counting, lambda s: None)
    )
    config = tiny_config(teacher_dir)
    config.synthesis.method = "counting"
    summary = main.run(config, str(tmp_path))
    assert summary["synthesis_calls"] == 6  # 3 epochs x 2 rounds
    assert summary["meta_gradient"] == "none"
    records = metrics.read_metrics(str(tmp_path))
    # Per-epoch means over the two rounds: (0.1 + 0.2) / 2, ..., (0.5 + 0.6) / 2.
    np.testing.assert_allclose([r["synth_level"] for r in records], [0.15, 0.35, 0.55], rtol=1e-6)
    assert "kd_loss" not in records[0] and "kd_loss" in records[2]
    _, state = final_state(str(tmp_path), config)
    np.testing.assert_allclose(state["synthesizer"]["level"], 0.6, rtol=1e-6)
    # 2 KD epochs of kd.steps student steps, split over the 2 rounds of each.
    assert int(state["student"]["step"]) == 2 * config.kd.steps


@pytest.mark.slow  # a real SIGTERM to a real run, then its resume, through the command: ~1 minute
def test_a_real_sigterm_saves_exits_75_and_the_rerun_resumes(teacher_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    workdir = tmp_path / "run"
    command = [
        sys.executable, "-m", "fastdfkd_jax.main", "--config=configs/dfkd_digits.py:fast2,runlocal",
        f"--workdir={workdir}", f"--config.teacher.checkpoint={teacher_dir}",
        "--config.epochs=30", "--config.checkpoint.every_epochs=100", "--config.progress_bar=False",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    metrics_file = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics_file.exists() and metrics_file.read_text().strip()):
        assert process.poll() is None and time.time() < deadline, "the run ended or stalled"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == preemption.PREEMPTED_STATUS, stderr[-2000:]
    # At the end of an epoch or inside one, wherever the notice fell.
    assert re.search(r"fastdfkd: preempted: the run saved (epoch \d+|\d+ units into epoch)", stderr)
    assert not (workdir / "summary.json").exists()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in metrics.read_metrics(str(workdir))] == list(range(1, 31))
