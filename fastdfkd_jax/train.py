"""The data-free distillation job: epochs, evaluation, checkpoints, the run's summary.

Each epoch (`fastdfkd_jax.epoch`): the synthesizer's `start_epoch` hook, then `rounds_per_epoch`
rounds (pool methods: one; generative methods: `kd.steps /
synthesis.generative.kd_steps_per_round`) of `calls_per_round(epoch)` synthesis calls (one, or
NAYER's more while warming up; each one compiled function: inner steps, best iterate, meta
update, BN memory update, pool insert) followed, after
`warmup` epochs, by `kd.steps / rounds_per_epoch` student steps on batches from the synthesizer
(`kd_images`: the pool, or fresh generator samples). Real data is used in one place only: the
student's (and once the teacher's) score on the test split every `eval_every_epochs` epochs:
accuracy, or mean IoU and pixel accuracy for segmentation (`evaluation.streamed.METRICS`), the split
opened and checked before training (`run_data`), kept on device (streamed for ImageNet and NYUv2,
generated for a smoke test). Everything the run needs to continue is in `DFKDState`, saved
(asynchronously) every `checkpoint.every_epochs` epochs, and inside an epoch on a preemption notice
(`epoch_progress`); all randomness derives from `config.seed`, the epoch and the call, so a resumed
run replays exactly what an uninterrupted one does. Metrics per epoch (averaged over its steps) go
to `metrics.jsonl` and TensorBoard, the summary to `summary.json`: the final student score and the
best over the evaluated epochs (`student_best_test_accuracy`, what the original reports).

A run's time is its compute: every step is compiled up front under the config's precision policy
(`config.precision`) with JAX's persistent compilation cache on (`config.compilation_cache`), the
test split loads while the steps compile, and metrics, sample grids and checkpoints are written off
the hot path. `summary.json` gives the seconds of synthesis, KD, evaluation and compilation apart,
the rest as `other_seconds`, and the values the backend chose for 'auto' keys.
"""

import concurrent.futures
import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
from absl import logging
from tqdm import tqdm

from fastdfkd_jax import (
    backend,
    checkpoint,
    compilation,
    components,
    epoch_progress,
    fingerprint,
    metric_files,
    models,
    optim,
    precision,
    preemption,
    provenance,
    ranges,
    reporting,
    run_data,
    samples,
    sharding,
    smoke,
    synthesis,
    timing,
)
from fastdfkd_jax import epoch as epoch_lib
from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.evaluation import scorer
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import KD_AUGMENTS

# Where a finished run writes its student as a model directory (`checkpoint.save_teacher`).
STUDENT_DIR = "student"


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks a distillation config before anything runs; a ValueError names the bad key."""
    ranges.check(config, ranges.DFKD)
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}.")
    if not 0 <= config.warmup < config.epochs:
        raise ValueError(f"warmup must be in [0, epochs={config.epochs}), got {config.warmup}.")
    if config.kd.steps < 1:
        raise ValueError(f"kd.steps must be >= 1, got {config.kd.steps}.")
    per_round = synthesis.kd_steps_per_round(config.synthesis)
    if per_round and config.kd.steps % per_round:
        raise ValueError(
            f"kd.steps={config.kd.steps} must be a multiple of the student steps after each "
            f"synthesis call ({per_round}: synthesis.generative.kd_steps_per_round)."
        )
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
    check_choice("pool dtype", config.pool.dtype, pool_lib.DTYPES)
    check_choice("pool.quantize", config.pool.quantize, pool_lib.QUANTIZE)
    if not isinstance(config.kd.schedule_per_epoch, bool):
        raise ValueError(
            f"kd.schedule_per_epoch must be True or False, got {config.kd.schedule_per_epoch!r}."
        )
    precision.validate(config.precision)
    for block in ("teacher", "student"):
        models.parse_kwargs(config[block].kwargs, f"{block}.kwargs")
    backend.validate(config)
    synthesis.validate(config.synthesis)
    optim.validate(config.kd.optimizer, "kd.optimizer")
    check_choice("kd.augment.kind", config.kd.augment.kind, KD_AUGMENTS)
    # An unknown dataset names the known ones; an image size it cannot take says so.
    info = run_data.dataset_info(config)
    if config.smoke_test and info.name not in smoke.MOCKED:
        raise ValueError(
            f"smoke_test (generated data, a random teacher) exists for {smoke.MOCKED}, "
            f"not {info.name!r}."
        )


def run_fingerprint(config: ml_collections.ConfigDict, parts: components.Components) -> dict:
    """`fingerprint.record` of the run: its settings, teacher, code versions and backend (and a
    given student's initial variables, as the setting `student.initial_variables`: their digest).
    """
    settings = config.to_dict()
    if parts.student_variables is not None:
        settings["student"]["initial_variables"] = fingerprint.teacher_digest(
            parts.student_variables
        )
    return fingerprint.record(
        settings,
        fingerprint.teacher_digest(parts.teacher_vars),
        fingerprint.code_versions(synthesis.code_version(config.synthesis)),
        backend.platform_of(parts.mesh),
    )


def best_logged(logged: list[dict], headline: str) -> tuple[float, int]:
    """(best student score, its epoch) among a resumed run's logged evaluations."""
    key = f"student_test_{headline}"
    return max(((r[key], r["epoch"]) for r in logged if key in r), default=(float("-inf"), 0))


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    teacher: tuple[Any, dict] | None = None,
    student: tuple[Any, dict | None] | None = None,
) -> dict:
    """Runs data-free distillation as `config` says; returns the summary written to `workdir`.

    `teacher` (module, variables) and `student` (module, initial variables or None) replace the
    config's models when given (the Python API, `fastdfkd_jax.api`); the config's `arch` and
    `kwargs` then only label them (records, the student's model directory).
    """
    clock = timing.RunClock()
    validate(config)
    overflow = synthesis.pool_overflow(config)
    if overflow:
        logging.warning("%s", overflow)
    if config.compilation_cache:
        cache_dir = compilation.use_persistent_cache(config.compilation_cache_dir)
        logging.info("Persistent compilation cache: %s", cache_dir)
    if config.smoke_test:  # a randomly initialized teacher, saved once in the work directory
        info = run_data.dataset_info(config)
        directory = smoke.init_teacher(config.teacher.arch, info, workdir, config.seed)
        teacher = components.load_teacher(config, info, directory)
    parts = components.build(config, teacher=teacher, student=student)
    logging.info(
        "Precision %s; backend %s chose %s",
        config.precision,
        backend.platform_of(parts.mesh),
        parts.backend_choices,
    )
    # The test split is opened and checked before any compute (a bad data set fails here); an
    # in-memory split is read and uploaded while the steps compile, so its batch is checked here.
    sharding.check_batch_divides(config.eval_batch_size, parts.mesh, "eval_batch_size")
    loader = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    test_future = loader.submit(scorer.SplitScorer, parts, workdir)
    if run_data.streamed(config.dataset.name) or config.smoke_test:
        test_future.result()
    # A workdir holding a run of another fingerprint is refused before any compute (it would
    # otherwise resume that run and report it as this one).
    fingerprint_record = run_fingerprint(config, parts)
    fingerprint.claim_workdir(workdir, fingerprint_record, config.start_afresh)
    keys = components.run_keys(config.seed)
    init_start = time.perf_counter()
    # The state is made by one jitted function, compiled on its first call: its compilation
    # counts as compilation, not set-up.
    with compilation.compile_seconds_in() as compiling_seconds:
        state = components.init_state(parts, keys)
    clock.compiled("init", compiling_seconds())
    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    within = checkpoint.make_manager(
        workdir, epoch_progress.WITHIN_EPOCH_KEPT, checkpoint.WITHIN_EPOCH_CHECKPOINTS
    )
    writer = background = watch = None
    try:
        state, restored, resume = epoch_progress.restore_latest(manager, within, state)
        jax.block_until_ready(state)
        clock.init_seconds = time.perf_counter() - init_start
        start_epoch = int(state.epoch)
        writer = metric_files.create_writer(workdir, start_epoch)
        background = reporting.BackgroundWriter()
        resumed_after_units = resume.units if resume is not None else None
        if resume is not None:
            logging.info("Resumed inside epoch %d, after %d units.", start_epoch + 1, resume.units)
        elif restored is not None:
            logging.info("Resumed from epoch %d.", start_epoch)
        with clock.compiling():
            steps = epoch_lib.compile_steps(parts, state, keys)
        clock.compiled("synthesis", steps.synthesis_compile_seconds)
        clock.compiled("kd", steps.kd_compile_seconds)
        test = test_future.result()
        with clock.compiling(), compilation.precision_scope(config.precision):
            clock.compiled("eval", test.compile(parts.teacher_vars, state.student.variables))
        teacher_scores = test.teacher(parts.teacher_vars)
        logging.info("Teacher test scores: %s", teacher_scores)
        headline = test.metric_names[0]
        # Timings accumulate across resumes: continue from the save inside the epoch, or else from
        # the last epoch logged before the restart (a record of older code may lack some clocks).
        logged = metric_files.read_metrics(workdir) if restored is not None else []
        carried = None
        if resume is not None:
            carried, clock.carried_seconds = resume.seconds, resume.run_seconds
        elif logged:
            carried = {p: logged[-1].get(f"{p}_seconds", 0.0) for p in timing.CARRIED_PHASES}
            clock.carried_seconds = logged[-1].get("run_seconds", 0.0)
        timer = timing.PhaseTimer(carried)
        student_scores = {name: float("nan") for name in test.metric_names}
        best = best_logged(logged, headline)
        labels = None
        if parts.info.task == "classification":  # the sample grids' labels
            labels = samples.TeacherLabels(
                parts.teacher, parts.teacher_vars, parts.info.mean, parts.info.std, parts.mesh
            )
        clock.end_setup()

        bar = tqdm(
            range(start_epoch, config.epochs),
            initial=start_epoch,
            total=config.epochs,
            disable=not reporting.is_primary() or not config.progress_bar,
            desc=config.method,
        )
        watch = preemption.Watch()
        for epoch in bar:
            state, images, record, stopped = epoch_lib.train_epoch(
                parts,
                steps,
                state,
                keys,
                epoch,
                timer,
                resume=resume,
                should_stop=watch.should_stop,
            )
            resume = None
            if stopped is not None:  # preempted inside the epoch: save where, flush, stop
                background.submit(writer.flush)
                stopped = dataclasses.replace(stopped, run_seconds=clock.run_seconds())
                checkpoint.save(
                    within,
                    epoch_lib.within_epoch_step(parts, epoch, stopped.units),
                    state,
                    metadata=stopped.to_json(),
                )
                background.wait()
                checkpoint.wait(within)
                raise preemption.Preempted(epoch, stopped.units)
            done = epoch + 1
            last = done == config.epochs
            record = dict(epoch=done, **record)
            if done % config.eval_every_epochs == 0 or last:
                student_scores = timer("eval", test.student, state.student.variables)
                record.update({f"student_test_{k}": v for k, v in student_scores.items()})
                best = max(best, (student_scores[headline], done))
                bar.set_postfix(student=f"{student_scores[headline]:.4f}")
            record.update(
                {f"{p}_seconds": timer.get(p) for p in timing.CARRIED_PHASES},
                run_seconds=clock.run_seconds(),
            )
            background.submit(writer.write_scalars, done, record)
            grid_due = config.sample_every_epochs and (
                done % config.sample_every_epochs == 0 or last
            )
            # (No grid for an epoch resumed after its last synthesis call: its images are gone.)
            if grid_due and images is not None:
                path = os.path.join(workdir, f"samples_{done:04d}.png")
                samples.save_epoch_samples(parts, labels, background, path, images)
            saved = done % config.checkpoint.every_epochs == 0 or last
            if saved:
                background.submit(writer.flush)
                timer("checkpoint", checkpoint.save, manager, done, state)
            if not last and watch.should_stop(epoch_lib.within_epoch_step(parts, done, 0)):
                # Preempted at the epoch's end: save, flush, stop.
                if not saved:
                    background.submit(writer.flush)
                    checkpoint.save(manager, done, state)
                background.wait()
                checkpoint.wait(manager)
                raise preemption.Preempted(done)

        if start_epoch >= config.epochs:
            student_scores = test.student(state.student.variables)
        # The distilled student as a model directory (the teachers' format): loadable by
        # `checkpoint.load_teacher`, the next run's teacher.
        checkpoint.save_teacher(
            os.path.join(workdir, STUDENT_DIR),
            state.student.variables,
            arch=config.student.arch,
            num_classes=parts.info.num_classes,
            dataset=parts.info.name,
            image_shape=parts.info.image_shape,
            kwargs=models.parse_kwargs(config.student.kwargs, "student.kwargs"),
            mean=parts.info.mean,
            std=parts.info.std,
        )
        # Waiting for the background writes and checkpoints still under way.
        timer("drain", lambda: (background.wait(), checkpoint.wait(manager)))
        summary = dict(
            **run_description(config, parts),
            **{f"teacher_test_{k}": v for k, v in teacher_scores.items()},
            **{f"student_test_{k}": v for k, v in student_scores.items()},
            # The best over the evaluated epochs (every run evaluates its last).
            **{f"student_best_test_{headline}": best[0]},
            student_best_epoch=best[1],
            synthesis_calls=epoch_lib.synthesis_calls(parts.synthesizer, config.epochs),
            **clock.summary(timer),
            resumed_from_epoch=start_epoch if restored is not None else None,
            # A resume inside that epoch: the units of it that were done (None: at its start).
            resumed_after_units=resumed_after_units,
            fingerprint=fingerprint_record["fingerprint"],
            fingerprint_record=fingerprint_record,
            environment=provenance.environment(),
            config=config.to_dict(),
        )
        reporting.write_summary(workdir, summary)
        return summary
    finally:
        # Also on errors (a NaN stop, an interrupt): finish the writes and checkpoints begun.
        if watch is not None:
            watch.close()
        loader.shutdown(wait=False)
        if background is not None:
            background.close()
        if writer is not None:
            writer.close()
        manager.close()
        within.close()


def run_description(config: ml_collections.ConfigDict, parts: components.Components) -> dict:
    """What ran: the method, its synthesis, precision and backend (the summary's first keys)."""
    return dict(
        method=config.method,
        synthesis_method=config.synthesis.method,
        g_steps=synthesis.inner_steps(config.synthesis),
        meta_gradient=parts.synthesizer.meta_gradient_label,
        precision=config.precision,
        backend=backend.platform_of(parts.mesh),
        backend_choices=parts.backend_choices,
        smoke_test=config.smoke_test,
    )
