"""The data-free distillation run: synthesis calls, student steps, evaluation, checkpoints, report.

Each epoch: one synthesis call (one compiled function: inner steps, best iterate, meta update, BN
momentum update, pool insert), then, after `warmup` epochs, `kd.steps` student steps on batches
drawn from the pool. Real data is used in one place only: the student's (and once the teacher's)
accuracy on the test split. Everything that the run needs to continue is in `DFKDState`, saved every
`checkpoint.every_epochs` epochs; all randomness derives from `config.seed` and the epoch, so a
resumed run replays exactly what an uninterrupted one does.
"""

import functools
import os
import time
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from fastdfkd_jax import checkpoint, data, distill, models, optim, reporting, sharding
from fastdfkd_jax.data import augment
from fastdfkd_jax.evaluate import make_evaluator
from fastdfkd_jax.state import ClassifierState
from fastdfkd_jax.synthesis import deepinversion, fastdfkd, losses
from fastdfkd_jax.synthesis import pool as pool_lib
from fastdfkd_jax.synthesis.objective import Objective, init_bn_memory
from fastdfkd_jax.teacher import check_model_fits, init_classifier

SYNTHESIS_METHODS = ("fast", "deepinversion")
SYNTHESIS_AUGMENTS = ("crop", "jitter")
ADVERSARIAL = ("kl", "js")


@flax.struct.dataclass
class DFKDState:
    """Everything a data-free run carries from one epoch to the next.

    Attributes:
      epoch: int32 scalar, epochs completed.
      synthesizer: the meta generator's `GeneratorState` (FastDFKD) or an empty-ish placeholder.
      bn_memory: the teacher BN momentum statistics.
      pool: the synthetic image pool.
      student: the student's `ClassifierState`.

    """

    epoch: jax.Array
    synthesizer: Any
    bn_memory: losses.BNMemory
    pool: pool_lib.Pool
    student: ClassifierState


def make_synthesis_augment(cfg: ml_collections.ConfigDict, mean, std):
    """`(rng, images in [0,1]) -> normalized inputs` for the synthesis loss, from `cfg`."""
    if cfg.kind not in SYNTHESIS_AUGMENTS:
        raise ValueError(
            f"Unknown synthesis augment {cfg.kind!r}; choose one of {SYNTHESIS_AUGMENTS}."
        )
    mean, std = tuple(mean), tuple(std)

    if cfg.kind == "crop":
        return functools.partial(
            augment.augment, padding=cfg.padding, flip=cfg.flip, mean=mean, std=std
        )

    def jitter(rng, images):
        roll_rng, flip_rng = jax.random.split(rng)
        images = augment.random_roll_jitter(roll_rng, images, cfg.jitter)
        if cfg.flip:
            images = augment.random_flip(flip_rng, images)
        return augment.normalize(images, mean, std)

    return jitter


def build_synthesizer(config, info, teacher: nn.Module, student: nn.Module, mesh=None):
    """The synthesizer that `config.synthesis` describes, its batches split over `mesh`'s `data`."""
    s = config.synthesis
    if s.method not in SYNTHESIS_METHODS:
        raise ValueError(
            f"Unknown synthesis method {s.method!r}; choose one of {SYNTHESIS_METHODS}."
        )
    if s.adversarial not in ADVERSARIAL:
        raise ValueError(
            f"Unknown adversarial loss {s.adversarial!r}; choose one of {ADVERSARIAL}."
        )
    if s.g_steps < 1:
        raise ValueError(f"synthesis.g_steps must be >= 1, got {s.g_steps}.")
    batch_sharding = sharding.batch_sharding(mesh) if mesh is not None else None
    objective = Objective(
        teacher=teacher,
        student=student,
        augment=make_synthesis_augment(s.augment, info.mean, info.std),
        bn=s.bn,
        oh=s.oh,
        bn_momentum=s.bn_momentum,
        adversarial=s.adversarial,
        js_temperature=s.js_temperature,
    )
    if s.method == "deepinversion":
        return deepinversion.DeepInversionSynthesizer(
            objective=objective,
            num_classes=info.num_classes,
            batch_size=s.batch_size,
            image_shape=tuple(info.image_shape),
            steps=s.g_steps,
            lr=s.lr_x,
            betas=tuple(s.inner_betas),
            mean=tuple(info.mean),
            std=tuple(info.std),
            batch_sharding=batch_sharding,
        )
    height, width, channels = info.image_shape
    if height != width:
        raise ValueError(f"The generator makes square images; {info.name} has {info.image_shape}.")
    generator = models.create_model(
        s.generator.arch, nz=s.generator.nz, ngf=s.generator.ngf, img_size=height, nc=channels
    )
    return fastdfkd.FastSynthesizer(
        generator=generator,
        objective=objective,
        num_classes=info.num_classes,
        batch_size=s.batch_size,
        g_steps=s.g_steps,
        lr_g=s.lr_g,
        lr_z=s.lr_z,
        meta_lr=s.meta_lr,
        inner_betas=tuple(s.inner_betas),
        meta_betas=tuple(s.meta_betas),
        inner_eps_root=s.inner_eps_root,
        meta_gradient=s.meta_gradient,
        reptile_factor=s.reptile_factor,
        meta=s.meta,
        remat=s.remat,
        unroll=s.unroll,
        batch_sharding=batch_sharding,
    )


def synthesis_call(state: DFKDState, teacher_vars, rng, adv_weight, *, synthesizer):
    """One synthesis call and the pool insert: `(state, ...) -> (state, images, metrics)`."""
    synth, bn_memory, images, metrics = synthesizer.synthesize(
        state.synthesizer, state.bn_memory, teacher_vars, state.student.variables, rng, adv_weight
    )
    state = state.replace(
        synthesizer=synth, bn_memory=bn_memory, pool=pool_lib.add(state.pool, images)
    )
    return state, images, metrics


def compile_synthesis(config, synthesizer, state, teacher_vars, rng, adv, *, mesh, donate=True):
    """Compiles one synthesis call; returns `(call, compile_seconds)`.

    `call(state, teacher_vars, rng, adv_weight) -> (state, images, metrics)`. FastDFKD and, with
    `synthesis.chunk_steps == 0`, DeepInversion are one compiled function. With `chunk_steps > 0`
    DeepInversion's steps run as `g_steps / chunk_steps` calls of one compiled, unrolled chunk
    driven from the host (XLA:CPU runs scans slowly; see synthesis/steps.py). The state is placed
    by the sharding rules, the images split along `data`, the metrics whole; with `donate` the
    input state's buffers are reused.
    """
    out_shardings = (
        sharding.state_shardings(state, mesh),
        sharding.batch_sharding(mesh),
        sharding.replicated(mesh),
    )
    donate_argnums = 0 if donate else ()
    chunk = config.synthesis.chunk_steps
    if config.synthesis.method != "deepinversion" or chunk == 0:
        return _compile(
            functools.partial(synthesis_call, synthesizer=synthesizer),
            state,
            teacher_vars,
            rng,
            adv,
            mesh=mesh,
            out_shardings=out_shardings,
            donate_argnums=donate_argnums,
        )
    if chunk < 0 or config.synthesis.g_steps % chunk:
        raise ValueError(
            f"synthesis.chunk_steps={chunk} must be >= 0 and divide g_steps="
            f"{config.synthesis.g_steps}."
        )
    start = time.perf_counter()
    begin = jax.jit(synthesizer.begin).lower(rng, teacher_vars).compile()
    carry = jax.eval_shape(synthesizer.begin, rng, teacher_vars)
    student_vars = state.student.variables

    def advance_fn(carry, bn_memory, teacher_vars, student_vars, adv, first_step):
        return synthesizer.advance(
            carry, bn_memory, teacher_vars, student_vars, adv, first_step, chunk, unroll=True
        )

    advance = (
        jax.jit(advance_fn, donate_argnums=0)
        .lower(carry, state.bn_memory, teacher_vars, student_vars, adv, jnp.int32(0))
        .compile()
    )

    def finish_fn(state, carry):
        synth, bn_memory, images, metrics = synthesizer.finish(
            state.synthesizer, carry, state.bn_memory
        )
        state = state.replace(
            synthesizer=synth, bn_memory=bn_memory, pool=pool_lib.add(state.pool, images)
        )
        return state, images, metrics

    finish = (
        jax.jit(finish_fn, out_shardings=out_shardings, donate_argnums=donate_argnums)
        .lower(state, carry)
        .compile()
    )
    seconds = time.perf_counter() - start

    def call(state, teacher_vars, rng, adv):
        carry = begin(rng, teacher_vars)
        for first in range(0, config.synthesis.g_steps, chunk):
            carry = advance(
                carry, state.bn_memory, teacher_vars, state.student.variables, adv, jnp.int32(first)
            )
        return finish(state, carry)

    return call, seconds


def kd_step(state: DFKDState, teacher_vars, rng, **kwargs):
    student, metrics = distill.student_step(state.student, state.pool, teacher_vars, rng, **kwargs)
    return state.replace(student=student), metrics


def compile_kd_step(
    config, info, student, teacher, tx, state, teacher_vars, rng, *, mesh, donate=True
):
    """Compiles the student step `(state, teacher_vars, rng) -> (state, metrics)` on `mesh`.

    Returns `(compiled, compile_seconds)`; with `donate` the input state's buffers are reused.
    """
    return _compile(
        functools.partial(
            kd_step,
            student=student,
            teacher=teacher,
            tx=tx,
            batch_size=config.kd.batch_size,
            temperature=config.kd.temperature,
            aug=config.kd.augment,
            mean=tuple(info.mean),
            std=tuple(info.std),
            batch_sharding=sharding.batch_sharding(mesh),
        ),
        state,
        teacher_vars,
        rng,
        mesh=mesh,
        out_shardings=(sharding.state_shardings(state, mesh), sharding.replicated(mesh)),
        donate_argnums=0 if donate else (),
    )


def load_teacher_checked(config, info) -> tuple[nn.Module, dict]:
    """The teacher module and variables, checked against the config and the dataset."""
    if not config.teacher.checkpoint:
        raise ValueError(
            "config.teacher.checkpoint is empty: pass --config.teacher.checkpoint=DIR, a teacher "
            "directory written by teacher training (WORKDIR/teacher) or the PyTorch import."
        )
    meta, variables = checkpoint.load_teacher(
        config.teacher.checkpoint, arch=config.teacher.arch, num_classes=info.num_classes
    )
    if tuple(meta["image_shape"]) != tuple(info.image_shape):
        raise ValueError(
            f"The teacher at {config.teacher.checkpoint!r} was trained on "
            f"{tuple(meta['image_shape'])} images ({meta['dataset']}), but {info.name} has "
            f"{tuple(info.image_shape)}."
        )
    teacher = models.create_model(config.teacher.arch, num_classes=info.num_classes)
    check_model_fits(teacher, info, "teacher")
    expected = jax.eval_shape(
        lambda: teacher.init(jax.random.PRNGKey(0), jnp.zeros((1, *info.image_shape)), train=False)
    )
    got = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.float32), variables)
    want = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
        raise ValueError(
            f"The teacher at {config.teacher.checkpoint!r} does not match a "
            f"{config.teacher.arch!r} "
            f"for {info.image_shape} images and {info.num_classes} classes."
        )
    return teacher, variables


def validate(config) -> None:
    """Config checks that need no data or model."""
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}.")
    if not 0 <= config.warmup < config.epochs:
        raise ValueError(f"warmup must be in [0, epochs={config.epochs}), got {config.warmup}.")
    if config.kd.steps < 1:
        raise ValueError(f"kd.steps must be >= 1, got {config.kd.steps}.")
    if config.pool.capacity < config.synthesis.batch_size:
        raise ValueError(
            f"pool.capacity={config.pool.capacity} is smaller than one synthesis batch "
            f"({config.synthesis.batch_size})."
        )


def _compile(fn, *args, mesh, out_shardings, donate_argnums=0):
    """AOT-compiles `fn` for `args` on `mesh`; returns (compiled, seconds).

    Ahead-of-time compilation traces once per run by construction: a later call with other shapes
    or dtypes raises instead of silently recompiling. Inputs are placed by `sharding.STATE_RULES`
    (the pool sharded along `data`, the rest replicated); outputs as `out_shardings` says.
    """
    start = time.perf_counter()
    compiled = (
        jax.jit(
            fn,
            in_shardings=sharding.state_shardings(args, mesh),
            out_shardings=out_shardings,
            donate_argnums=donate_argnums,
        )
        .lower(*args)
        .compile()
    )
    return compiled, time.perf_counter() - start


def _check_finite(metrics: dict, step: int, where: str) -> None:
    for name, value in metrics.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(
                f"{where} {name} became {value} at epoch {step}; stopping. The last good "
                "checkpoint is kept."
            )


def make_kd_optimizer(config: ml_collections.ConfigDict):
    """The student's optimizer: `kd.optimizer` over the run's KD steps, rate scaled to the batch."""
    return optim.make_optimizer(
        sharding.scale_learning_rate(config.kd.optimizer, config.kd.batch_size),
        (config.epochs - config.warmup) * config.kd.steps,
    )


def init_state(
    config, info, synthesizer, student, tx, teacher_vars, student_rng, synthesizer_rng, mesh
) -> DFKDState:
    """A fresh run's state at epoch 0 (empty pool), placed on `mesh` by `sharding.place_state`.

    `teacher_vars` should already be replicated on `mesh` (the BN memory is computed from them).
    """
    state = DFKDState(
        epoch=jnp.zeros((), jnp.int32),
        synthesizer=synthesizer.init(synthesizer_rng),
        bn_memory=init_bn_memory(synthesizer.objective, teacher_vars, info.image_shape),
        pool=pool_lib.init_pool(config.pool.capacity, info.image_shape, config.pool.dtype),
        student=init_classifier(student, tx, student_rng, info.image_shape),
    )
    return sharding.place_state(state, mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs data-free distillation as `config` says; returns the summary written to `workdir`."""
    run_start = time.perf_counter()
    validate(config)
    info = data.get_info(config.dataset.name)
    teacher, teacher_vars = load_teacher_checked(config, info)
    student = models.create_model(config.student.arch, num_classes=info.num_classes)
    check_model_fits(student, info, "student")
    mesh = sharding.make_mesh(config.mesh)
    synthesizer = build_synthesizer(config, info, teacher, student, mesh)
    sharding.check_batch_divides(config.synthesis.batch_size, mesh, "synthesis.batch_size")
    sharding.check_batch_divides(config.kd.batch_size, mesh, "kd.batch_size")
    sharding.check_batch_divides(config.pool.capacity, mesh, "pool.capacity")

    tx = make_kd_optimizer(config)
    root = jax.random.PRNGKey(config.seed)
    student_rng, synth_init_rng, synth_rng, kd_rng, reset_rng = jax.random.split(root, 5)

    teacher_vars = sharding.replicate(teacher_vars, mesh)
    state = init_state(
        config, info, synthesizer, student, tx, teacher_vars, student_rng, synth_init_rng, mesh
    )
    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    state, restored = checkpoint.restore_latest(manager, state)
    metrics_writer = reporting.MetricsWriter(workdir)
    start_epoch = int(state.epoch)
    metrics_writer.truncate_after(start_epoch)
    if restored is not None:
        logging.info("Resumed from epoch %d.", start_epoch)

    # Compile both steps once, up front, and time the compilation on its own.
    adv = jnp.asarray(config.synthesis.adv, jnp.float32)
    synth_fn, synth_compile = compile_synthesis(
        config, synthesizer, state, teacher_vars, synth_rng, adv, mesh=mesh
    )
    kd_fn, kd_compile = compile_kd_step(
        config, info, student, teacher, tx, state, teacher_vars, kd_rng, mesh=mesh
    )
    compile_seconds = synth_compile + kd_compile
    reset_fn = jax.jit(
        functools.partial(
            fastdfkd.reset_layers,
            layer_names=tuple(config.synthesis.reset_layers),
            std=config.synthesis.reset_std,
        )
    )

    test = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
    evaluate = make_evaluator(teacher, info.mean, info.std, mesh, config.eval_batch_size)
    evaluate_student = make_evaluator(student, info.mean, info.std, mesh, config.eval_batch_size)
    teacher_accuracy = evaluate(teacher_vars, test)
    logging.info("Teacher test accuracy: %.4f", teacher_accuracy)

    # Timings accumulate across resumes: continue from the last epoch logged before the restart.
    logged = reporting.read_metrics(workdir) if restored is not None else []
    synthesis_seconds = logged[-1]["synthesis_seconds"] if logged else 0.0
    kd_seconds = logged[-1]["kd_seconds"] if logged else 0.0
    eval_seconds = 0.0
    student_accuracy = float("nan")
    zero = jnp.zeros((), jnp.float32)
    bar = tqdm(
        range(start_epoch, config.epochs),
        initial=start_epoch,
        total=config.epochs,
        disable=not reporting.is_primary() or not config.progress_bar,
        desc=config.method,
    )
    for epoch in bar:
        if epoch == config.synthesis.reset_l0_epoch and config.synthesis.method == "fast":
            synth = state.synthesizer
            state = state.replace(
                synthesizer=synth.replace(
                    params=reset_fn(synth.params, jax.random.fold_in(reset_rng, epoch))
                )
            )
        adv_weight = adv if epoch >= config.warmup else zero
        start = time.perf_counter()
        state, images, synth_metrics = synth_fn(
            state, teacher_vars, jax.random.fold_in(synth_rng, epoch), adv_weight
        )
        jax.block_until_ready((state, images))
        synthesis_seconds += time.perf_counter() - start
        synth_metrics = jax.device_get(synth_metrics)
        _check_finite(synth_metrics, epoch + 1, "synthesis")

        kd_metrics = {}
        if epoch >= config.warmup:
            start = time.perf_counter()
            for i in range(config.kd.steps):
                rng = jax.random.fold_in(kd_rng, epoch * config.kd.steps + i)
                state, kd_metrics = kd_fn(state, teacher_vars, rng)
            jax.block_until_ready(state)
            kd_seconds += time.perf_counter() - start
            kd_metrics = jax.device_get(kd_metrics)
            _check_finite(kd_metrics, epoch + 1, "distillation")
        state = state.replace(epoch=state.epoch + 1)

        record = dict(epoch=epoch + 1, **synth_metrics, **kd_metrics)
        last = epoch + 1 == config.epochs
        if (epoch + 1) % config.eval_every_epochs == 0 or last:
            start = time.perf_counter()
            student_accuracy = evaluate_student(state.student.variables, test)
            eval_seconds += time.perf_counter() - start
            record["student_test_accuracy"] = student_accuracy
            bar.set_postfix(student=f"{student_accuracy:.4f}")
        record.update(synthesis_seconds=synthesis_seconds, kd_seconds=kd_seconds)
        metrics_writer.write(epoch + 1, record)
        if config.sample_every_epochs and ((epoch + 1) % config.sample_every_epochs == 0 or last):
            reporting.save_image_grid(
                os.path.join(workdir, f"samples_{epoch + 1:04d}.png"),
                sharding.to_host(images)[: config.sample_grid_size],  # gathered across hosts
                upscale=config.sample_upscale,
            )
        if (epoch + 1) % config.checkpoint.every_epochs == 0 or last:
            checkpoint.save(manager, epoch + 1, state)

    if start_epoch >= config.epochs:
        student_accuracy = evaluate_student(state.student.variables, test)
    s = config.synthesis
    summary = dict(
        method=config.method,
        synthesis_method=s.method,
        g_steps=s.g_steps,
        meta_gradient=s.meta_gradient if s.method == "fast" and s.meta else "none",
        teacher_test_accuracy=teacher_accuracy,
        student_test_accuracy=student_accuracy,
        synthesis_seconds=synthesis_seconds,
        synthesis_calls=config.epochs,
        compile_seconds=compile_seconds,
        synthesis_compile_seconds=synth_compile,
        kd_compile_seconds=kd_compile,
        kd_seconds=kd_seconds,
        eval_seconds=eval_seconds,
        total_seconds=time.perf_counter() - run_start,
        resumed_from_epoch=start_epoch if restored is not None else None,
        config=config.to_dict(),
    )
    reporting.write_summary(workdir, summary)
    manager.close()
    return summary
