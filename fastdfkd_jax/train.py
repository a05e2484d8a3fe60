"""The data-free distillation job: synthesis rounds, student steps, evaluation, checkpoints.

Each epoch: the synthesizer's `start_epoch` hook, then `rounds_per_epoch` rounds (FastDFKD and
DeepInversion: one) of one synthesis call (one compiled function: inner steps, best iterate, meta
update, BN memory update, pool insert) followed, after `warmup` epochs, by `kd.steps` student steps
on batches from the synthesizer (`kd_images`: the pool, or fresh generator samples). Real data is
used in one place only: the student's (and once the teacher's) score on the test split, accuracy
(or mean IoU and pixel accuracy for segmentation; `stream_eval.METRICS`), the split opened and
checked before training (`run_data`; streamed for ImageNet and NYUv2, generated for a smoke test).
Everything the run needs to continue is in `DFKDState`, saved every `checkpoint.every_epochs`
epochs; all randomness derives from `config.seed` and the epoch, so a resumed run replays exactly
what an uninterrupted one does. Metrics per epoch (averaged over its steps) go to `metrics.jsonl`
and TensorBoard, the summary to `summary.json`.
"""

import dataclasses
import functools
import os
import time
from collections.abc import Callable

import jax
import ml_collections
from absl import logging
from tqdm import tqdm

from fastdfkd_jax import (
    checkpoint,
    components,
    data,
    distill,
    metrics,
    optim,
    reporting,
    run_data,
    sharding,
    smoke,
    stream_eval,
    synthesis,
    timing,
)
from fastdfkd_jax.data.streaming import ArraySource
from fastdfkd_jax.evaluate import make_evaluator
from fastdfkd_jax.state import DFKDState
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import KD_AUGMENTS


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks a distillation config before anything runs; a ValueError names the bad key."""
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}.")
    if not 0 <= config.warmup < config.epochs:
        raise ValueError(f"warmup must be in [0, epochs={config.epochs}), got {config.warmup}.")
    if config.kd.steps < 1:
        raise ValueError(f"kd.steps must be >= 1, got {config.kd.steps}.")
    every = {
        "eval_every_epochs": config.eval_every_epochs,
        "checkpoint.every_epochs": config.checkpoint.every_epochs,
    }
    for key, value in every.items():
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}.")
    if config.pool.capacity < config.synthesis.batch_size:
        raise ValueError(
            f"pool.capacity={config.pool.capacity} is smaller than one synthesis batch "
            f"({config.synthesis.batch_size})."
        )
    if config.pool.dtype not in pool_lib.DTYPES:
        raise ValueError(
            f"Unknown pool dtype {config.pool.dtype!r}; choose one of {pool_lib.DTYPES}."
        )
    synthesis.validate(config.synthesis)
    optim.validate(config.kd.optimizer, "kd.optimizer")
    if config.kd.augment.kind not in KD_AUGMENTS:
        raise ValueError(
            f"Unknown kd.augment.kind {config.kd.augment.kind!r}; choose one of {KD_AUGMENTS}."
        )
    # An unknown dataset names the known ones; an image size it cannot take says so.
    info = run_data.dataset_info(config)
    if config.smoke_test and info.name not in smoke.MOCKED:
        raise ValueError(
            f"smoke_test (generated data, a random teacher) exists for {smoke.MOCKED}, "
            f"not {info.name!r}."
        )


@dataclasses.dataclass(frozen=True)
class Steps:
    """The run's compiled steps and their compile seconds."""

    synthesis: Callable
    kd: Callable
    synthesis_compile_seconds: float
    kd_compile_seconds: float


def compile_steps(
    parts: components.Components, state: DFKDState, keys: dict[str, jax.Array]
) -> Steps:
    """Both steps compiled once, up front, on the run's mesh (the compilation timed on its own)."""
    synth_fn, synth_seconds = parts.synthesizer.compile_call(
        state,
        parts.teacher_vars,
        keys["synthesis"],
        components.adv_array(parts.config.synthesis.adv),
        mesh=parts.mesh,
    )
    kd_fn, kd_seconds = distill.compile_kd_step(
        state,
        parts.teacher_vars,
        keys["kd"],
        mesh=parts.mesh,
        **components.kd_step_options(parts),
    )
    return Steps(synth_fn, kd_fn, synth_seconds, kd_seconds)


def make_test_evaluators(
    parts: components.Components, workdir: str
) -> tuple[Callable[[dict], stream_eval.Scores], Callable[[dict], stream_eval.Scores]]:
    """`(evaluate_teacher, evaluate_student)`: variables -> {metric: value} on the test split.

    The split is opened and checked here, before any training (`run_data`). Streamed datasets
    (ImageNet, NYUv2) and smoke tests are read example by example (`stream_eval`); in-memory ones
    are evaluated whole (`evaluate.make_evaluator`).
    """
    config, info, mesh = parts.config, parts.info, parts.mesh
    if run_data.streamed(config.dataset.name) or config.smoke_test:
        source = run_data.open_test_split(config, info, workdir)
        run_data.check_test_split(source, info)
        return tuple(
            functools.partial(
                stream_eval.StreamEvaluator(model, info, mesh, config.eval_batch_size),
                source=source,
            )
            for model in (parts.teacher, parts.student)
        )
    test = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
    run_data.check_test_split(ArraySource(test), info)

    def accuracy(model):
        evaluate = make_evaluator(model, info.mean, info.std, mesh, config.eval_batch_size)
        return lambda variables: {"accuracy": evaluate(variables, test)}

    return accuracy(parts.teacher), accuracy(parts.student)


def train_epoch(
    parts: components.Components,
    steps: Steps,
    state: DFKDState,
    keys: dict[str, jax.Array],
    epoch: int,
    timer: timing.PhaseTimer,
) -> tuple[DFKDState, jax.Array, dict]:
    """One epoch (0-based `epoch`): returns (state, the last synthesized images, its metrics).

    Metrics are the means over the epoch's synthesis rounds and student steps, and the student's
    learning rate at its last step.
    """
    config, synthesizer = parts.config, parts.synthesizer
    state = state.replace(
        synthesizer=synthesizer.start_epoch(
            state.synthesizer, epoch, jax.random.fold_in(keys["epoch_start"], epoch)
        )
    )
    adv = components.adv_array(synthesizer.adv_weight(epoch))
    synth_mean, kd_mean = metrics.Mean(), metrics.Mean()
    rounds = synthesizer.rounds_per_epoch

    def kd_steps(state, first):
        for i in range(config.kd.steps):
            rng = jax.random.fold_in(keys["kd"], first + i)
            state, step_metrics = steps.kd(state, parts.teacher_vars, rng)
            kd_mean.add(step_metrics)
        return state

    images = None
    for r in range(rounds):
        call = epoch * rounds + r
        state, images, synth_metrics = timer(
            "synthesis",
            steps.synthesis,
            state,
            parts.teacher_vars,
            jax.random.fold_in(keys["synthesis"], call),
            adv,
        )
        synth_mean.add(synth_metrics)
        metrics.check_finite(jax.device_get(synth_metrics), epoch + 1, "synthesis")
        if epoch >= config.warmup:
            state = timer("kd", kd_steps, state, call * config.kd.steps)
    record = synth_mean.result()
    if epoch >= config.warmup:
        kd_record = kd_mean.result()
        metrics.check_finite(kd_record, epoch + 1, "distillation")
        kd_record["learning_rate"] = float(parts.schedule(int(state.student.step) - 1))
        record.update(kd_record)
    return state.replace(epoch=state.epoch + 1), images, record


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs data-free distillation as `config` says; returns the summary written to `workdir`."""
    run_start = time.perf_counter()
    validate(config)
    teacher = None
    if config.smoke_test:  # a randomly initialized teacher, saved once in the work directory
        info = run_data.dataset_info(config)
        directory = smoke.init_teacher(config.teacher.arch, info, workdir, config.seed)
        teacher = components.load_teacher(config, info, directory)
    parts = components.build(config, teacher=teacher)
    # The test split is opened and checked before any compute: a bad data set fails here.
    evaluate_teacher, evaluate_student = make_test_evaluators(parts, workdir)
    metric_names = stream_eval.METRICS[parts.info.task]
    keys = components.run_keys(config.seed)
    state = components.init_state(parts, keys)
    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    state, restored = checkpoint.restore_latest(manager, state)
    start_epoch = int(state.epoch)
    writer = metrics.create_writer(workdir, start_epoch)
    if restored is not None:
        logging.info("Resumed from epoch %d.", start_epoch)
    steps = compile_steps(parts, state, keys)

    teacher_scores = evaluate_teacher(parts.teacher_vars)
    logging.info("Teacher test scores: %s", teacher_scores)

    # Timings accumulate across resumes: continue from the last epoch logged before the restart.
    logged = metrics.read_metrics(workdir) if restored is not None else []
    timer = timing.PhaseTimer(
        {k: logged[-1][f"{k}_seconds"] for k in ("synthesis", "kd")} if logged else None
    )
    student_scores = {name: float("nan") for name in metric_names}
    bar = tqdm(
        range(start_epoch, config.epochs),
        initial=start_epoch,
        total=config.epochs,
        disable=not reporting.is_primary() or not config.progress_bar,
        desc=config.method,
    )
    for epoch in bar:
        state, images, record = train_epoch(parts, steps, state, keys, epoch, timer)
        done = epoch + 1
        last = done == config.epochs
        record = dict(epoch=done, **record)
        if done % config.eval_every_epochs == 0 or last:
            student_scores = timer("eval", evaluate_student, state.student.variables)
            record.update({f"student_test_{k}": v for k, v in student_scores.items()})
            bar.set_postfix(student=f"{student_scores[metric_names[0]]:.4f}")
        record.update(synthesis_seconds=timer.get("synthesis"), kd_seconds=timer.get("kd"))
        writer.write_scalars(done, record)
        if config.sample_every_epochs and (done % config.sample_every_epochs == 0 or last):
            reporting.save_image_grid(
                os.path.join(workdir, f"samples_{done:04d}.png"),
                sharding.to_host(images)[: config.sample_grid_size],  # gathered across hosts
                upscale=config.sample_upscale,
            )
        if done % config.checkpoint.every_epochs == 0 or last:
            writer.flush()
            checkpoint.save(manager, done, state)

    if start_epoch >= config.epochs:
        student_scores = evaluate_student(state.student.variables)
    s = config.synthesis
    summary = dict(
        method=config.method,
        synthesis_method=s.method,
        g_steps=s.g_steps,
        meta_gradient=parts.synthesizer.meta_gradient_label,
        **{f"teacher_test_{k}": v for k, v in teacher_scores.items()},
        **{f"student_test_{k}": v for k, v in student_scores.items()},
        smoke_test=config.smoke_test,
        synthesis_seconds=timer.get("synthesis"),
        synthesis_calls=config.epochs * parts.synthesizer.rounds_per_epoch,
        compile_seconds=steps.synthesis_compile_seconds + steps.kd_compile_seconds,
        synthesis_compile_seconds=steps.synthesis_compile_seconds,
        kd_compile_seconds=steps.kd_compile_seconds,
        kd_seconds=timer.get("kd"),
        eval_seconds=timer.get("eval"),
        total_seconds=time.perf_counter() - run_start,
        resumed_from_epoch=start_epoch if restored is not None else None,
        config=config.to_dict(),
    )
    reporting.write_summary(workdir, summary)
    writer.close()
    manager.close()
    return summary
