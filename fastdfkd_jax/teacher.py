"""Teacher training: a pure jitted step, per-epoch evaluation, checkpoints, resume, summary.

`train_and_evaluate(config, workdir)` trains `config.model.arch` on `config.dataset.name`, writes
per-epoch metrics (averaged over the epoch's steps) to `metrics.jsonl` and TensorBoard, resumable
checkpoints under `checkpoints/`, the trained teacher under `teacher/` (see
`checkpoint.save_teacher`) and `summary.json`. Steps compile under `config.precision` with JAX's
persistent compilation cache on (`config.compilation_cache`); the test split stays on device.
Checkpoints are named by the step; on a preemption notice (read after every step) the run saves
that step, with the epoch's running sums as metadata (`epoch_progress`), and resumes there exactly.
"""

import functools
import os
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh
from tqdm import tqdm

from fastdfkd_jax import (
    checkpoint,
    compilation,
    data,
    epoch_progress,
    metric_files,
    models,
    optim,
    precision,
    preemption,
    ranges,
    reporting,
    sharding,
)
from fastdfkd_jax.data import augment
from fastdfkd_jax.evaluation import on_device
from fastdfkd_jax.state import ClassifierState, init_classifier, jit_create


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks a teacher-training config before anything runs; a ValueError names the bad key."""
    ranges.check(config, ranges.TEACHER)
    if config.train.epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {config.train.epochs}.")
    models.check_classifier_name(config.model.arch)
    models.parse_kwargs(config.model.kwargs, "model.kwargs")
    optim.validate(config.train.optimizer, "train.optimizer")
    precision.validate(config.precision)
    data.get_info(config.dataset.name)  # an unknown dataset names the known ones


def train_step(
    state: ClassifierState,
    batch: dict,
    rng: jax.Array,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    aug: ml_collections.ConfigDict,
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[ClassifierState, dict]:
    """One supervised step with cross-entropy on augmented images.

    Args:
      state: the classifier's state.
      batch: `image` float32 [B, H, W, C] in [0, 1], `label` int32 [B].
      rng: a key for this step (the caller folds in the step).

    Returns:
      (new state, {'loss', 'accuracy'} scalars).

    """
    images = augment.augment(
        rng, batch["image"], padding=aug.padding, flip=aug.flip, mean=mean, std=std
    )

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        # float32 loss whatever the model computes in (the `bfloat16` policy: bfloat16 logits).
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads, batch_stats, tx)
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).mean()
    return state, {"loss": loss, "accuracy": accuracy}


def compile_train_step(
    state: ClassifierState,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    aug: ml_collections.ConfigDict,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    image_shape: Sequence[int],
    mesh: Mesh,
    donate: bool = True,
) -> tuple[jax.stages.Compiled, float]:
    """The compiled teacher step `(state, batch, rng) -> (state, metrics)` on `mesh`.

    The state is placed by the sharding rules, the batch (`batch_size` images of `image_shape`)
    split along `data`, the key and the metrics whole; with `donate` the input state's buffers are
    reused. Returns `(compiled, compile_seconds)`.
    """
    batch = {
        "image": jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }
    return compilation.aot_compile(
        functools.partial(train_step, model=model, tx=tx, aug=aug, mean=mean, std=std),
        state,
        batch,
        jax.eval_shape(lambda: jax.random.PRNGKey(0)),
        mesh=mesh,
        in_shardings=(
            sharding.state_shardings(state, mesh),
            sharding.batch_sharding(mesh),
            sharding.replicated(mesh),
        ),
        out_shardings=(sharding.state_shardings(state, mesh), sharding.replicated(mesh)),
        donate_argnums=0 if donate else (),
    )


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only, so resumes replay it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains a teacher as `config` says; returns the summary it also writes to `workdir`."""
    validate(config)
    if config.compilation_cache:
        compilation.use_persistent_cache(config.compilation_cache_dir)
    info = data.get_info(config.dataset.name)
    model = models.create_model(
        config.model.arch,
        num_classes=info.num_classes,
        dtype=precision.compute_dtype(config.precision),
        **models.parse_kwargs(config.model.kwargs, "model.kwargs"),
    )
    models.check_fits(model, info, "model")
    mesh = sharding.make_mesh(config.mesh)
    precision.check_backend(config.precision, mesh.devices.flat)
    sharding.check_batch_divides(config.train.batch_size, mesh, "train.batch_size")
    sharding.check_batch_divides(config.eval_batch_size, mesh, "eval_batch_size")

    train = data.load_split(config.dataset.name, "train", config.dataset.data_dir or None)
    test = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
    n_train = len(train["label"])
    steps_per_epoch = n_train // config.train.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} is larger than the "
            f"{n_train} training examples of {info.name}."
        )
    total_steps = steps_per_epoch * config.train.epochs
    opt_cfg = optim.scale_learning_rate(config.train.optimizer, config.train.batch_size)
    tx = optim.make_optimizer(opt_cfg, total_steps)
    schedule = optim.make_schedule(opt_cfg, total_steps)

    root = jax.random.PRNGKey(config.seed)
    init_rng, train_rng = jax.random.split(root)
    state = jit_create(
        lambda rng: init_classifier(model, tx, rng, info.image_shape), mesh, init_rng
    )

    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    state, restored = checkpoint.restore_latest(manager, state)
    # Checkpoints are named by the step: one inside an epoch (a preemption notice) holds where
    # the epoch's running means stood as its metadata.
    start_epoch, start_step = divmod(int(state.step), steps_per_epoch)
    resume = None
    if restored is not None and start_step:
        resume = epoch_progress.EpochProgress.from_json(checkpoint.metadata_of(manager, restored))
        if resume is None:  # only a save on a preemption notice falls inside an epoch
            raise RuntimeError(
                f"Checkpoint {restored} in {manager.directory} falls inside an epoch but holds no "
                "epoch progress: it was not written by this job."
            )
    if restored is not None:
        logging.info("Resumed from step %d (epoch %d, step %d of it).", restored, start_epoch + 1,
                     start_step)  # fmt: skip
    writer = metric_files.create_writer(workdir, int(state.step))

    test_split = on_device.put_split(test, mesh, config.eval_batch_size)
    evaluator = on_device.Evaluator(model, info.mean, info.std, mesh)
    with compilation.precision_scope(config.precision):
        step_fn, _ = compile_train_step(
            state,
            model=model,
            tx=tx,
            aug=config.train.augment,
            mean=info.mean,
            std=info.std,
            batch_size=config.train.batch_size,
            image_shape=info.image_shape,
            mesh=mesh,
        )
        evaluator.compile(state.variables, test_split)

    # The training clock goes on from a resumed run's save inside the epoch, or else from its last
    # epoch's record (0 where a record of older code lacks it).
    logged = metric_files.read_metrics(workdir) if restored is not None else []
    if resume is not None:
        train_seconds = resume.seconds.get("train", 0.0)
    else:
        train_seconds = logged[-1].get("train_seconds", 0.0) if logged else 0.0
    test_accuracy = float("nan")
    with preemption.Watch() as watch:  # the SIGTERM handler only while training
        for epoch in range(start_epoch, config.train.epochs):
            order = epoch_order(config.seed, epoch, n_train)
            epoch_start = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            bar = tqdm(
                range(first, steps_per_epoch),
                desc=f"epoch {epoch + 1}/{config.train.epochs}",
                disable=not reporting.is_primary() or not config.progress_bar,
                leave=False,
            )
            if first:  # resumed inside this epoch: the sums of its steps before the save
                mean = metric_files.Mean(*resume.mean_args("train"))
            else:
                mean = metric_files.Mean()
            for i in bar:
                rows = order[i * config.train.batch_size : (i + 1) * config.train.batch_size]
                batch = sharding.put_batch(
                    {"image": train["image"][rows], "label": train["label"][rows]}, mesh
                )
                rng = jax.random.fold_in(train_rng, epoch * steps_per_epoch + i)
                state, step_metrics = step_fn(state, batch, rng)
                mean.add(step_metrics)
                done = epoch * steps_per_epoch + i + 1
                if i + 1 < steps_per_epoch and watch.should_stop(done):
                    # Preempted inside the epoch: save this step with the epoch's sums, stop.
                    clock = {"train": train_seconds + time.perf_counter() - epoch_start}
                    progress = epoch_progress.EpochProgress.of(epoch, i + 1, {"train": mean}, clock)
                    writer.flush()
                    checkpoint.save(manager, done, state, metadata=progress.to_json())
                    checkpoint.wait(manager)
                    raise preemption.Preempted(epoch, i + 1)
            jax.block_until_ready(state)
            train_seconds += time.perf_counter() - epoch_start
            test_accuracy = evaluator(state.variables, test_split)
            step = int(state.step)
            averaged = mean.result()
            record = dict(
                epoch=epoch + 1,
                train_loss=averaged["loss"],
                train_accuracy=averaged["accuracy"],
                learning_rate=float(schedule(step - 1)),
                test_accuracy=test_accuracy,
                # This process's part of the epoch, evaluation included; the run's training so far.
                epoch_seconds=time.perf_counter() - epoch_start,
                train_seconds=train_seconds,
            )
            if not np.isfinite(record["train_loss"]):
                raise FloatingPointError(
                    f"train_loss became {record['train_loss']} at step {step} (epoch {epoch + 1}); "
                    "the last good checkpoint is kept."
                )
            writer.write_scalars(step, record)
            logging.info("epoch %d: %s", epoch + 1, record)
            last = epoch + 1 == config.train.epochs
            preempted = not last and watch.should_stop(step)
            if (epoch + 1) % config.checkpoint.every_epochs == 0 or last or preempted:
                writer.flush()
                checkpoint.save(manager, step, state)
            if preempted:  # saved above: stop, resumable by the same command
                checkpoint.wait(manager)
                raise preemption.Preempted(epoch + 1)

    if restored is not None and start_epoch >= config.train.epochs:
        test_accuracy = evaluator(state.variables, test_split)
    checkpoint.wait(manager)
    teacher_dir = os.path.join(workdir, "teacher")
    # Every process calls it: orbax synchronizes the processes and only process 0 writes.
    checkpoint.save_teacher(
        teacher_dir,
        state.variables,
        arch=config.model.arch,
        num_classes=info.num_classes,
        dataset=info.name,
        image_shape=info.image_shape,
        kwargs=models.parse_kwargs(config.model.kwargs, "model.kwargs"),
        mean=info.mean,
        std=info.std,
    )
    summary = dict(
        test_accuracy=test_accuracy,
        train_seconds=train_seconds,
        epochs=config.train.epochs,
        steps=int(state.step),
        resumed_from_step=restored,
        arch=config.model.arch,
        dataset=info.name,
        teacher_dir=os.path.abspath(teacher_dir),
        config=config.to_dict(),
    )
    reporting.write_summary(workdir, summary)
    writer.close()
    manager.close()
    return summary
