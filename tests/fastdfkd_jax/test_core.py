"""Optimizers, metrics and reports, teacher checkpoints, configs and the command line."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from absl import app

from fastdfkd_jax import checkpoint, config_args, methods, optim, reporting
from fastdfkd_jax import metric_files as metrics
from tests.conftest import CONFIGS, REPO, load_config, load_script


def test_cosine_schedule_known_values():
    cfg = optim.optimizer_config(learning_rate=0.2, end_learning_rate=2e-4, schedule="cosine")
    schedule = optim.make_schedule(cfg, 100)
    np.testing.assert_allclose(schedule(0), 0.2, rtol=1e-6)
    np.testing.assert_allclose(schedule(50), 0.5 * (0.2 + 2e-4), rtol=1e-5)
    np.testing.assert_allclose(schedule(100), 2e-4, rtol=1e-5)


def test_per_epoch_cosine_is_the_originals_scheduler_stepped_once_an_epoch():
    """CosineAnnealingLR(T_max=E, eta_min) stepped after each epoch: every step of epoch e (from
    0) at eta_min + (lr0 - eta_min) (1 + cos(pi e / E)) / 2; the KD config holds it per epoch.
    """
    cfg = optim.optimizer_config(learning_rate=0.2, end_learning_rate=2e-4, schedule="cosine")
    epochs, steps = 5, 4
    schedule = optim.make_schedule(cfg, epochs * steps, steps_per_change=steps)
    for step in range(epochs * steps):
        e = step // steps
        want = 2e-4 + (0.2 - 2e-4) * (1 + np.cos(np.pi * e / epochs)) / 2
        np.testing.assert_allclose(schedule(step), want, rtol=1e-5)
    config = load_config("dfkd_digits.py:fast5")
    assert config.kd.schedule_per_epoch  # the original's, by default
    with pytest.raises(ValueError, match="steps_per_change"):
        optim.make_schedule(cfg, 10, steps_per_change=0)


def test_warmup_then_constant():
    cfg = optim.optimizer_config(learning_rate=1.0, schedule="constant", warmup_steps=4)
    schedule = optim.make_schedule(cfg, 10)
    np.testing.assert_allclose([schedule(i) for i in (0, 2, 4, 9)], [0.0, 0.5, 1.0, 1.0])


def test_sgd_weight_decay_matches_pytorch_formula():
    # PyTorch SGD: g' = g + wd * p; buf = g' (first step); p -= lr * buf.
    cfg = optim.optimizer_config(learning_rate=0.1, schedule="constant", weight_decay=0.5)
    tx = optim.make_optimizer(cfg, 10)
    params = jnp.array([2.0])
    updates, _ = tx.update(jnp.array([1.0]), tx.init(params), params)
    np.testing.assert_allclose(updates, -0.1 * (1.0 + 0.5 * 2.0))


def test_bad_optimizer_config():
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        optim.make_optimizer(optim.optimizer_config(name="rmsprop"), 10)
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        optim.make_schedule(optim.optimizer_config(schedule="step"), 10)


def test_image_grid_layout():
    images = np.stack([np.full((2, 3, 1), v) for v in (0.0, 0.5, 1.0)])
    grid = reporting.image_grid(images, columns=2)
    assert grid.shape == (4, 6, 1) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 128 and grid[2, 0, 0] == 255
    assert grid[2, 3, 0] == 0  # the empty fourth cell


def test_metrics_writer_truncates_after_resume_point(tmp_path):
    writer = metrics.create_writer(str(tmp_path))
    for step in range(1, 5):
        writer.write_scalars(step, {"loss": np.float32(step)})
    writer.close()
    metrics.create_writer(str(tmp_path), resume_step=2).close()
    assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [1, 2]
    assert metrics.read_metrics(str(tmp_path / "none")) == []


def test_teacher_directory_round_trip_and_errors(tmp_path):
    variables = {
        "params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "batch_stats": {"bn": {"mean": np.ones(3, np.float32)}},
    }
    checkpoint.save_teacher(
        str(tmp_path), variables, arch="a", num_classes=3, dataset="d", image_shape=(4, 4, 1)
    )
    meta, restored = checkpoint.load_teacher(str(tmp_path), arch="a", num_classes=3)
    assert meta["image_shape"] == [4, 4, 1]
    np.testing.assert_array_equal(restored["params"]["w"], variables["params"]["w"])
    with pytest.raises(ValueError, match="is a 'a', but the config asks for 'b'"):
        checkpoint.load_teacher(str(tmp_path), arch="b")
    with pytest.raises(ValueError, match="has 3 classes, but the config's dataset has 10"):
        checkpoint.load_teacher(str(tmp_path), num_classes=10)
    with pytest.raises(ValueError, match="meta.json is missing"):
        checkpoint.load_teacher(str(tmp_path / "nowhere"))


def test_every_method_config_is_complete():
    for method in methods.METHODS:
        config = load_config(f"dfkd_digits.py:{method}")
        assert config.method == method
    fast10 = load_config("dfkd_digits.py:fast10").synthesis.fast
    assert (fast10.g_steps, fast10.lr_g, fast10.lr_z) == (10, 2e-3, 0.01)
    np.testing.assert_allclose(fast10.meta_lr, 2e-2)  # lr_g * g_steps, as the original
    cifar = load_config("dfkd_cifar.py:cifar100,fast2,resnet34-resnet18")
    assert (cifar.synthesis.adv, cifar.synthesis.oh, cifar.dataset.name) == (1.33, 0.5, "cifar100")
    with pytest.raises(ValueError, match="Unknown config argument 'resnet18-resnet34'"):
        load_config("dfkd_cifar.py:cifar10,fast5,resnet18-resnet34")
    # An unknown method name lists the valid ones.
    with pytest.raises(ValueError, match="Unknown method 'fast3'; choose one of .*'cmi500'.*'dfq'"):
        methods.apply_method(load_config("dfkd_digits.py"), "fast3")
    with pytest.raises(ValueError, match="Unknown config argument 'fast3'; .*dafl, zskt, dfq"):
        load_config("dfkd_digits.py:fast3")


def test_config_argument_parsing():
    parse = config_args.parse_arg
    choices = {"method": ("fast2", "fast5"), "dataset": ("a", "b")}
    got = parse(
        "fast2,runlocal,dataset=b", method="fast5", dataset="a", runlocal=False, choices=choices
    )
    assert got.to_dict() == dict(method="fast2", dataset="b", runlocal=True)
    assert parse(None, n=3, x=0.5).to_dict() == dict(n=3, x=0.5)
    assert parse("n=4,x=1e-3,flag=false", n=3, x=0.5, flag=True).to_dict() == dict(
        n=4, x=1e-3, flag=False
    )
    with pytest.raises(ValueError, match="Unknown config argument key 'm'"):
        parse("m=1", n=3)
    with pytest.raises(ValueError, match="n='x' is not a int"):
        parse("n=x", n=3)
    with pytest.raises(ValueError, match="method='fast3' is not one of fast2, fast5"):
        parse("method=fast3", method="fast5", choices={"method": ("fast2", "fast5")})
    with pytest.raises(
        ValueError, match="Unknown config argument 'quick'; flags: \\['runlocal'\\]"
    ):
        parse("quick", runlocal=False)
    # The same variant by bare word and by key=value.
    assert load_config("dfkd_cifar.py:cifar100,deepinv2k,wrn40_2-wrn16_1") == load_config(
        "dfkd_cifar.py:dataset=cifar100,method=deepinv2k,pair=wrn40_2-wrn16_1"
    )


def test_configs_are_loaded_by_path_and_import_no_other_config():
    for name in sorted(os.listdir(CONFIGS)):
        if not name.endswith(".py") or name.startswith("spline_"):
            continue
        text = open(os.path.join(CONFIGS, name)).read()
        assert "from configs" not in text and "import configs" not in text, name
        assert load_config(name).job in ("teacher", "dfkd", "benchmark"), name
    assert not os.path.exists(os.path.join(CONFIGS, "__init__.py"))


def run_main(*args, cwd):
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "fastdfkd_jax.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_line_overrides_and_unknown_keys(tmp_path):
    config = os.path.join(CONFIGS, "teacher_digits.py")
    bad = run_main(f"--config={config}", f"--workdir={tmp_path}", "--config.train.nope=1", cwd=REPO)
    assert bad.returncode != 0 and "nope" in bad.stderr
    wrong_type = run_main(
        f"--config={config}", f"--workdir={tmp_path}", "--config.train.epochs=two", cwd=REPO
    )
    assert wrong_type.returncode != 0 and "epochs" in wrong_type.stderr
    ok = run_main(
        f"--config={config}",
        f"--workdir={tmp_path}",
        "--config.train.epochs=1",
        "--config.model.arch=digits_cnn_tiny",
        "--config.mesh.data=1",
        "--config.progress_bar=False",
        cwd=str(tmp_path),  # the config file is found by path, from anywhere
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["config"]["train"]["epochs"] == 1
    assert summary["config"]["model"]["arch"] == "digits_cnn_tiny"


def read_tensorboard_scalars(logdir):
    """(tag, step, value) of every scalar in the event files of `logdir` (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    found = []
    for name in sorted(os.listdir(logdir)):
        data = open(os.path.join(logdir, name), "rb").read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                found.append((value.tag, event.step, value.simple_value))
    return found


def test_metric_writers_jsonl_tensorboard_and_epoch_mean(tmp_path):
    writer = metrics.create_writer(str(tmp_path))
    writer.write_scalars(1, {"loss": np.float32(0.5), "learning_rate": 0.1})
    writer.write_scalars(2, {"loss": 0.25, "learning_rate": 0.05})
    writer.close()
    assert metrics.read_metrics(str(tmp_path)) == [
        {"step": 1, "loss": 0.5, "learning_rate": 0.1},
        {"step": 2, "loss": 0.25, "learning_rate": 0.05},
    ]
    scalars = read_tensorboard_scalars(tmp_path / metrics.TENSORBOARD_DIR)
    assert sorted(scalars) == [
        ("learning_rate", 1, pytest.approx(0.1)),
        ("learning_rate", 2, pytest.approx(0.05)),
        ("loss", 1, 0.5),
        ("loss", 2, 0.25),
    ]
    mean = metrics.Mean()
    assert mean.result() == {}
    for loss in (1.0, 2.0, 6.0):
        mean.add({"loss": jnp.float32(loss)})
    assert mean.result() == {"loss": pytest.approx(3.0)}
    # A call of several steps adds their sum: (1 + 2 + 6 + (3 + 5 + 7)) / 6 steps.
    mean.add({"loss": jnp.float32(15.0)}, count=3)
    assert mean.result() == {"loss": pytest.approx(4.0)}
    # Stopped after some calls and resumed from its sums: the same result, bit for bit.
    values = np.random.default_rng(0).normal(size=7).astype(np.float32)
    whole, first = metrics.Mean(), metrics.Mean()
    for v in values:
        whole.add({"loss": jnp.float32(v)})
    for v in values[:3]:
        first.add({"loss": jnp.float32(v)})
    resumed = metrics.Mean(first.sums(), first.count)
    for v in values[3:]:
        resumed.add({"loss": jnp.float32(v)})
    assert resumed.count == 7 and resumed.result() == whole.result()
    with pytest.raises(FloatingPointError, match="distillation kd_loss became nan at epoch 3"):
        metrics.check_finite({"kd_loss": float("nan")}, 3, "distillation")


def test_background_writer_keeps_order_and_reraises(tmp_path):
    path = tmp_path / "log.txt"
    background = reporting.BackgroundWriter()

    def append(text):
        with open(path, "a") as f:
            f.write(text)

    for i in range(20):
        background.submit(append, f"{i},")
    background.wait()
    assert path.read_text() == "".join(f"{i}," for i in range(20))

    def fail():
        raise OSError("disk full")

    background.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        background.close()


def test_markdown_table():
    text = reporting.markdown_table(("a", "b"), [("x", 1), ("y", "2.0")])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| x | 1 |", "| y | 2.0 |"]
    with pytest.raises(ValueError, match="align 'l' has 1 letters for 2 columns"):
        reporting.markdown_table(("a", "b"), [], align="l")


def test_console_entry_point_is_installed():
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="console_scripts") if e.name == "fastdfkd"]
    assert point.value == "fastdfkd_jax.main:cli"


def _flag(value):
    return type("Flag", (), {"value": value})()


def test_a_users_mistake_in_process_exits_2_with_one_line(monkeypatch, capsys):
    from fastdfkd_jax import main

    config = load_config("dfkd_digits.py:runlocal")
    config.kd.batch_size = 0
    monkeypatch.setattr(main, "_LIST_METHODS", _flag(False))
    monkeypatch.setattr(main, "_CONFIG", _flag(config))
    monkeypatch.setattr(main, "_WORKDIR", _flag("/nonexistent/workdir"))
    with pytest.raises(SystemExit) as exit_info:
        main.main(["fastdfkd"])
    assert exit_info.value.code == main.USER_ERROR_STATUS
    assert capsys.readouterr().err == (
        "fastdfkd: error: kd.batch_size=0 is out of range: it must be an integer >= 1.\n"
    )


def test_list_methods_needs_no_config_and_shows_every_record(monkeypatch, capsys):
    from fastdfkd_jax import main

    monkeypatch.setattr(main, "_LIST_METHODS", _flag(True))
    monkeypatch.setattr(main, "_CONFIG", _flag(None))
    main.main(["fastdfkd"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(methods.REGISTRY)
    assert "DeepInv-2k" in lines[0]


def test_without_list_methods_the_command_asks_for_config_and_workdir(monkeypatch):
    from fastdfkd_jax import main

    def flag(value):
        return type("Flag", (), {"value": value})()

    monkeypatch.setattr(main, "_LIST_METHODS", flag(False))
    monkeypatch.setattr(main, "_CONFIG", flag(None))
    monkeypatch.setattr(main, "_WORKDIR", flag(None))
    with pytest.raises(app.UsageError, match="--config and --workdir are required"):
        main.main(["fastdfkd"])


def test_the_method_lists_derive_from_the_records():
    registry = methods.REGISTRY
    assert methods.BENCH_METHODS == tuple(registry)  # every record is benchmarked by default
    assert set(methods.BASELINE_METHODS) == {"deepinv2k", "cmi500", "dafl", "zskt", "dfq"}
    assert methods.GENERATIVE_BASELINES == ("dafl", "zskt", "dfq")
    assert methods.SINGLE_SEED_METHODS == ("deepinv2k", "cmi500")
    assert methods.label("fast5") == "Fast-5" and methods.label("unknown") == "unknown"
    for name, record in registry.items():  # each preset names its own method
        assert methods.apply_method(load_config("dfkd_digits.py"), name).method == name
        assert record.summary and record.label


@pytest.mark.parametrize(
    "config_file, prefix",
    [("dfkd_digits.py", ""), ("dfkd_fashion_mnist.py", ""), ("dfkd_cifar.py", "cifar100,")],
)
def test_every_preset_keeps_every_image_its_student_draws_from(config_file, prefix):
    """The original's pools keep all of a run's images; so does each preset's, sized to its own
    schedule (a generative method trains on fresh samples of its generator: its pool's size does
    not matter)."""
    from fastdfkd_jax import synthesis

    for name in methods.REGISTRY:
        config = load_config(f"{config_file}:{prefix}{name}")
        assert synthesis.pool_overflow(config) is None, name
        images = synthesis.images_in_run(config)
        if name in methods.GENERATIVE_BASELINES:
            assert config.pool.capacity < images  # what would be flagged for a pool method
        else:
            assert config.pool.capacity >= images


def test_only_imagenet_keeps_fewer_images_than_it_makes_as_documented():
    """ImageNet's pool keeps the newest 140,000 of its 400,000 images (docs/imagenet_nyuv2.md), and
    its runs say so; NYUv2's presets keep every image."""
    from fastdfkd_jax import synthesis

    for method in ("fast50", "deepinv2k"):
        note = synthesis.pool_overflow(load_config(f"dfkd_imagenet.py:method={method}"))
        assert "pool.capacity=140000 holds fewer than the 400000 images" in note
    for method in ("fast10", "fast5", "fast2", "deepinv2k"):
        assert synthesis.pool_overflow(load_config(f"dfkd_nyuv2.py:method={method}")) is None


POOL_METHODS = ("fast", "fast_meta_latent", "deepinversion", "cmi", "nayer")


def test_every_synthesis_method_is_a_pool_method_or_the_generative_one():
    """Pins the registry, so a new method joins the pool-overflow test below."""
    from fastdfkd_jax import synthesis

    assert set(synthesis.SYNTHESIZERS) == {"generative", *POOL_METHODS}


@pytest.mark.parametrize("method", POOL_METHODS)
def test_every_method_that_draws_from_its_pool_is_told_when_the_pool_overflows(method):
    """Any method but the generative one trains its student from the pool: a pool of one batch in
    a run of two calls is flagged for each; the generative method is never flagged."""
    from fastdfkd_jax import synthesis

    config = load_config("dfkd_digits.py:fast5")
    config.synthesis.method = method
    config.epochs, config.warmup = 2, 0
    config.pool.capacity = config.synthesis.batch_size
    assert synthesis.pool_overflow(config) is not None
    config.synthesis.method = "generative"
    assert synthesis.pool_overflow(config) is None


def test_check_choice_names_the_key_the_value_and_the_choices():
    from fastdfkd_jax.checks import check_choice

    check_choice("synthesis.fast.strategy", "meta", ("meta", "sequential"))
    with pytest.raises(
        ValueError,
        match=r"Unknown synthesis.fast.strategy 'greedy'; choose one of \('meta', 'seq'\)\.",
    ):
        check_choice("synthesis.fast.strategy", "greedy", ("meta", "seq"))


@pytest.mark.slow  # each case starts a process (about 15 s); the default suite tests in process
@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.kd.batch_size=0", "kd.batch_size=0 is out of range: it must be an integer >= 1"),
        ("--config.kd.optimizer.learning_rate=nan", "kd.optimizer.learning_rate=nan is out of"),
        ("--config.synthesis.batch_size=-1", "synthesis.batch_size=-1 is out of range"),
        (
            "--config.teacher.checkpoint=/nonexistent/teacher",
            "No teacher at '/nonexistent/teacher'",
        ),
    ],
)
def test_a_users_mistake_is_one_line_without_a_traceback(override, message, tmp_path):
    done = subprocess.run(
        [
            sys.executable, "-m", "fastdfkd_jax.main", "--config=configs/dfkd_digits.py:runlocal",
            f"--workdir={tmp_path}", override, "--config.compilation_cache=False",
        ],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("fastdfkd: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    from fastdfkd_jax import main

    def broken(config, workdir):
        raise RuntimeError("internal")

    monkeypatch.setattr(main, "run", broken)
    monkeypatch.setattr(main, "_CONFIG", type("F", (), {"value": object()})())
    monkeypatch.setattr(main, "_WORKDIR", type("F", (), {"value": "/tmp/w"})())
    monkeypatch.setattr(main, "_LIST_METHODS", type("F", (), {"value": False})())
    with pytest.raises(RuntimeError, match="internal"):
        main.main(["fastdfkd"])


def truncate_checkpoint(directory, step):
    """Cuts every array file of checkpoint `step` under `directory` in half (a full disk)."""
    import glob

    files = [
        f
        for f in glob.glob(os.path.join(directory, str(step), "**", "*"), recursive=True)
        if os.path.isfile(f) and os.path.getsize(f) > 0 and "/d/" in f
    ]
    assert files
    for f in files:
        with open(f, "r+b") as handle:
            handle.truncate(os.path.getsize(f) // 2)


def test_a_run_resumes_inside_an_epoch_only_from_a_readable_checkpoint_ahead_of_the_last_epoch(
    tmp_path,
):
    """The trainer's choice between the epoch-boundary and the within-epoch checkpoints."""
    import jax.numpy as jnp

    from fastdfkd_jax import epoch_progress
    from fastdfkd_jax.epoch_progress import EpochProgress

    def state_of(value):
        return {"w": jnp.full((64, 64), float(value))}

    def progress(epoch, units):
        return EpochProgress(epoch, units, {"synthesis": {"loss": 0.1}}, {"synthesis": 1}, {})

    def managers():
        return (
            checkpoint.make_manager(str(tmp_path), 3),
            checkpoint.make_manager(str(tmp_path), 2, checkpoint.WITHIN_EPOCH_CHECKPOINTS),
        )

    def restored():
        boundary, within = managers()
        state, step, where = epoch_progress.restore_latest(boundary, within, state_of(0))
        boundary.close(), within.close()
        return float(state["w"][0, 0]), step, where

    boundary, within = managers()
    checkpoint.save(boundary, 2, state_of(2))  # 2 epochs done
    checkpoint.save(within, 11, state_of(1.5), metadata=progress(1, 3).to_json())  # stale
    checkpoint.save(within, 25, state_of(2.5), metadata=progress(2, 4).to_json())
    checkpoint.wait(boundary), checkpoint.wait(within)
    boundary.close(), within.close()
    within_dir = tmp_path / checkpoint.WITHIN_EPOCH_CHECKPOINTS
    # Inside epoch 3, where it stopped, with the progress saved beside it; the stale one deleted.
    assert restored() == (2.5, 25, progress(2, 4))
    assert sorted(os.listdir(within_dir)) == ["25"]
    # That checkpoint broken: the epoch boundary (and the broken one deleted).
    truncate_checkpoint(str(within_dir), 25)
    assert restored() == (2.0, 2, None)
    assert os.listdir(within_dir) == []


def test_a_broken_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A truncated file in the latest checkpoint: the one before it is restored (with a warning);
    none readable: an error naming the directory.
    """

    import jax.numpy as jnp

    target = {"w": jnp.zeros((64, 64)), "step": jnp.zeros((), jnp.int32)}
    manager = checkpoint.make_manager(str(tmp_path), max_to_keep=3)
    for step in (1, 2):
        state = {"w": jnp.full((64, 64), float(step)), "step": jnp.asarray(step, jnp.int32)}
        checkpoint.save(manager, step, state)
        checkpoint.wait(manager)
    manager.close()

    def truncate(step):
        truncate_checkpoint(str(tmp_path / "checkpoints"), step)

    truncate(2)
    manager = checkpoint.make_manager(str(tmp_path), max_to_keep=3)
    state, step = checkpoint.restore_latest(manager, target)
    manager.close()
    assert step == 1 and float(state["w"][0, 0]) == 1.0
    truncate(1)
    manager = checkpoint.make_manager(str(tmp_path), max_to_keep=3)
    with pytest.raises(
        ValueError, match=r"No checkpoint in .*checkpoints can be read \(steps \[2, 1\]\)"
    ):
        checkpoint.restore_latest(manager, target)
    manager.close()


def test_compare_runs_tells_identical_from_different(tmp_path):

    import jax.numpy as jnp

    compare = load_script("compare_runs")

    def run(name, value, loss):
        directory = tmp_path / name
        manager = checkpoint.make_manager(str(directory), max_to_keep=1)
        checkpoint.save(manager, 3, {"w": jnp.full((4,), value)})
        checkpoint.wait(manager)
        manager.close()
        rows = [{"epoch": 1, "kd_loss": loss, "kd_seconds": value * 7}]  # seconds do not count
        (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(directory)

    a, b = run("a", 1.0, 0.5), run("b", 1.0, 0.5)
    assert compare.differences(a, b) == []
    c = run("c", 1.0 + 1e-7, 0.5)
    assert compare.differences(a, c) == ["state leaf ['w'] differs"]
    d = run("d", 1.0, 0.25)
    assert compare.differences(a, d) == ["metrics.jsonl differs (1 against 1 records)"]


def test_a_resumed_runs_clock_goes_on_from_the_carried_seconds(monkeypatch):
    from fastdfkd_jax import timing
    from fastdfkd_jax.epoch_progress import EpochProgress

    now = [100.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    clock = timing.RunClock()
    clock.carried_seconds = 50.0  # the earlier processes' run, to their last record or save
    clock.compiled("synthesis", 2.0)
    now[0] = 110.0
    phases = timing.PhaseTimer({"synthesis": 30.0, "kd": 15.0, "eval": 1.0})
    summary = clock.summary(phases)
    assert clock.run_seconds() == summary["total_seconds"] == 60.0
    # The carried phases are the whole run's: what they leave of the total stays >= 0.
    assert summary["other_seconds"] == 60.0 - 46.0 - 2.0
    # A save inside an epoch keeps the run's seconds; one made before they were kept reads as 0.
    progress = EpochProgress(1, 3, {}, {}, {"synthesis": 30.0}, run_seconds=60.0)
    assert EpochProgress.from_json(progress.to_json()) == progress
    older = progress.to_json()
    del older["epoch_progress"]["run_seconds"]
    assert EpochProgress.from_json(older).run_seconds == 0.0
