"""The MARS-head phase: new heads for a finished distillation run's student, fit and fine-tuned
on its pool (synthetic images only), scored on the test split.

`run(config, workdir)` restores the finished run in `workdir` (its config: the dfkd config it was
trained with), computes the student's pooled features and the teacher's logits of every pool
image, fits the heads of `mars_head.heads` (`fit.HEADS`), scores each as fit and after KD
fine-tuning in every mode of `mars_head.modes` with seeds `0 .. mars_head.seeds - 1`. Seed `s`
draws the same batches and augmentations for every head and mode, so heads are compared on equal
terms. Real data is used only to score.

Outputs in `workdir/mars_head/`: `fits.json` and `heads.npz` (the fitted heads, written once),
`arms.jsonl` (one line per fine-tuned head, mode and seed), `summary.json` and `results.md`. A
killed phase resumes: the fits are read back and the arms already in `arms.jsonl` are skipped
(an arm is a few minutes at most); since every arm's randomness derives from `config.seed` and its
seed, the results are those of an uninterrupted phase.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from fastdfkd_jax import checkpoint, components, data, reporting, sharding, train
from fastdfkd_jax.data import augment
from fastdfkd_jax.evaluation.on_device import make_evaluator
from fastdfkd_jax.mars_head import finetune, fit, heads
from fastdfkd_jax.state import DFKDState
from fastdfkd_jax.synthesis import pool as pool_lib

OUTPUT_DIR = "mars_head"
FITS_FILE, HEADS_FILE, ARMS_FILE = "fits.json", "heads.npz", "arms.jsonl"
RESULTS_FILE = "results.md"
# Folded into the root key of `config.seed`: the phase's randomness is its own stream, apart
# from the run's (`components.RUN_KEYS` are split from the same root).
PHASE_STREAM = 1
# MARS needs at least the intercept and one hinge.
MIN_MAX_TERMS = 2
# The block keys that define the fits; `fits.json` records them so a resume cannot mix protocols.
FIT_KEYS = ("heads", "max_terms", "thresh")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the run's config and its `mars_head` block; a ValueError names the bad key."""
    train.validate(config)  # the run's config is a dfkd config
    if "mars_head" not in config:
        raise ValueError("The config has no mars_head block (config_blocks.mars_head()).")
    m = config.mars_head
    for key, value, allowed in (
        ("heads", m.heads, tuple(fit.HEADS)),
        ("modes", m.modes, finetune.MODES),
    ):
        if not value or len(set(value)) != len(value) or not set(value) <= set(allowed):
            raise ValueError(
                f"mars_head.{key}={tuple(value)!r} must be distinct names from {allowed}."
            )
    for key, low in (("seeds", 1), ("epochs", 1)):
        if m[key] < low:
            raise ValueError(f"mars_head.{key} must be >= {low}, got {m[key]}.")
    if m.max_terms != 0 and m.max_terms < MIN_MAX_TERMS:
        raise ValueError(
            f"mars_head.max_terms must be 0 (earth's default) or >= {MIN_MAX_TERMS}, got "
            f"{m.max_terms}."
        )
    if not 0.0 <= m.thresh < 1.0:
        raise ValueError(f"mars_head.thresh must be in [0, 1), got {m.thresh}.")
    if not m.lr_factor > 0:
        raise ValueError(f"mars_head.lr_factor must be > 0, got {m.lr_factor}.")


def restore_finished_run(parts: components.Components, workdir: str) -> DFKDState:
    """The last checkpoint of the distillation run in `workdir`, which must have finished."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ValueError(
            f"No distillation checkpoints in {workdir!r}: run the dfkd job with this workdir first."
        )
    config = parts.config
    target = components.init_state(parts, components.run_keys(config.seed))
    manager = checkpoint.make_manager(workdir, config.checkpoint.max_to_keep)
    state, step = checkpoint.restore_latest(manager, target)
    manager.close()
    if step is None or int(state.epoch) < config.epochs:
        done = 0 if step is None else int(state.epoch)
        raise ValueError(
            f"The run in {workdir!r} stopped at epoch {done} of epochs={config.epochs}: finish it "
            "(rerun the dfkd job there) before fitting heads."
        )
    return state


def pool_images(pool: pool_lib.Pool) -> np.ndarray:
    """The filled part of `pool` as float32 [size, H, W, C] in [0, 1] on the host.

    Raises:
      ValueError: an empty pool (`size` 0).

    """
    size = int(pool.size)
    if size == 0:
        raise ValueError("The pool is empty (pool.size=0): there are no images to fit heads on.")
    images = sharding.to_host(pool.images)[:size]
    return np.asarray(jax.device_get(pool_lib._decode(jnp.asarray(images))))


def batched_apply(model, variables: dict, images: np.ndarray, info, batch_size: int) -> np.ndarray:
    """`model`'s eval-mode outputs on `images` [N, H, W, C] in [0, 1], float64 [N, ...].

    At full float32 matmul precision, so the fits do not depend on the backend's default.
    """
    fn = jax.jit(
        lambda v, x: model.apply(v, augment.normalize(x, info.mean, info.std), train=False)
    )
    outs = []
    with jax.default_matmul_precision("highest"):
        for start in range(0, len(images), batch_size):
            outs.append(np.asarray(fn(variables, jnp.asarray(images[start : start + batch_size]))))
    return np.concatenate(outs).astype(np.float64)


def _write_atomic(path: str, write, mode: str = "w") -> None:
    """`write(file)` into `path + '.tmp'`, renamed to `path` once complete (a kill leaves no
    partial file).
    """
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        write(f)
    os.replace(tmp, path)


def _protocol(config: ml_collections.ConfigDict) -> dict:
    return {k: reporting.jsonable(config.mars_head[k]) for k in FIT_KEYS}


def load_or_fit_heads(
    config: ml_collections.ConfigDict, out_dir: str, make_inputs, score
) -> tuple[dict, dict]:
    """The fitted heads `(params by name, stats by name)`, read from `out_dir` when there.

    `make_inputs()` gives the `fit.FitInputs` (called only when fitting); `score(name, params)`
    the head's test accuracy as fit.

    Raises:
      ValueError: `out_dir` holds fits of another protocol (`FIT_KEYS` differ).

    """
    fits_path, heads_path = os.path.join(out_dir, FITS_FILE), os.path.join(out_dir, HEADS_FILE)
    protocol = _protocol(config)
    if os.path.exists(fits_path) and os.path.exists(heads_path):
        with open(fits_path) as f:
            saved = json.load(f)
        if saved["protocol"] != protocol:
            raise ValueError(
                f"{out_dir!r} holds heads fit with mars_head {saved['protocol']}, but the config "
                f"has {protocol}: use another workdir or remove {out_dir!r}."
            )
        with np.load(heads_path) as npz:
            flat = traverse_util.unflatten_dict(
                {k: jnp.asarray(v) for k, v in npz.items()}, sep="/"
            )
        logging.info("Read the fitted heads from %s.", out_dir)
        return {name: flat[name] for name in config.mars_head.heads}, saved["heads"]
    m = config.mars_head
    built = fit.fit_heads(m.heads, make_inputs())
    params = {name: p for name, (p, _) in built.items()}
    stats = {
        name: dict(s, test_accuracy=score(name, params[name])) for name, (_, s) in built.items()
    }
    for name, s in stats.items():
        logging.info("Head %s as fit: %s", name, s)
    if reporting.is_primary():
        flat = traverse_util.flatten_dict(params, sep="/")
        _write_atomic(heads_path, lambda f: np.savez(f, **flat), mode="wb")
        _write_atomic(
            fits_path,
            lambda f: json.dump(
                reporting.jsonable(dict(protocol=protocol, heads=stats)), f, indent=2
            ),
        )
    return params, stats


def read_arms(path: str) -> dict[tuple[str, str, int], dict]:
    """The finished arms of `arms.jsonl`, keyed by (head, mode, seed); {} when absent."""
    if not os.path.exists(path):
        return {}
    arms = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                arms[(record["head"], record["mode"], record["seed"])] = record
    return arms


def summarize(config: ml_collections.ConfigDict, stats: dict, arms: dict) -> dict:
    """Per head: its fit statistics and, per mode, the fine-tuned test accuracies over seeds."""
    out = {}
    for name in config.mars_head.heads:
        modes = {}
        for mode in config.mars_head.modes:
            runs = [arms[(name, mode, s)] for s in range(config.mars_head.seeds)]
            acc = np.asarray([r["test_accuracy"] for r in runs])
            modes[mode] = dict(
                test_accuracy_mean=float(acc.mean()),
                test_accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                test_accuracies=acc.tolist(),
                kd_loss_last_epoch_mean=float(np.mean([r["kd_loss_last_epoch"] for r in runs])),
                seconds_mean=float(np.mean([r["seconds"] for r in runs])),
            )
        out[name] = dict(fit=stats[name], finetuned=modes)
    return out


def results_table(config: ml_collections.ConfigDict, summary: dict) -> str:
    """The markdown table of `summary`'s heads (accuracies in %)."""
    modes = config.mars_head.modes
    header = ["head", "hidden", "params", "pool R^2", "pool agree", "fit s", "test as fit"]
    header += [f"test, fine-tuned ({mode})" for mode in modes]
    rows = []
    for name, entry in summary["heads"].items():
        s = entry["fit"]
        row = [
            name,
            s["hidden_units"],
            f"{s['parameters']:,}",
            f"{s['pool_rsq']:.4f}",
            f"{100 * s['pool_agreement']:.2f}",
            f"{s['fit_seconds']:.1f}",
            f"{100 * s['test_accuracy']:.2f}",
        ]
        for mode in modes:
            f = entry["finetuned"][mode]
            row.append(f"{100 * f['test_accuracy_mean']:.2f} ± {100 * f['test_accuracy_std']:.2f}")
        rows.append(row)
    return reporting.markdown_table(header, rows)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the phase on the finished run in `workdir`; returns its summary (also written)."""
    start = time.perf_counter()
    validate(config)
    parts = components.build(config)
    state = restore_finished_run(parts, workdir)
    images = pool_images(state.pool)
    split = heads.split_classifier(parts.student, parts.info.image_shape)
    student_vars = jax.device_get(state.student.variables)
    body_vars = heads.body_variables(student_vars, split)
    info, m = parts.info, config.mars_head
    out_dir = os.path.join(workdir, OUTPUT_DIR)
    os.makedirs(out_dir, exist_ok=True)

    test = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
    evaluators = {}

    def score(name: str, head_params: dict, variables: dict | None = None) -> float:
        model, start_vars = heads.headed(split, body_vars, head_params)
        if name not in evaluators:
            evaluators[name] = make_evaluator(
                model, info.mean, info.std, parts.mesh, config.eval_batch_size
            )
        return evaluators[name](start_vars if variables is None else variables, test)

    def make_inputs() -> fit.FitInputs:
        features = batched_apply(split.body, body_vars, images, info, config.eval_batch_size)
        targets = batched_apply(
            parts.teacher, parts.teacher_vars, images, info, config.eval_batch_size
        )
        logging.info("Fitting heads on %d pool images, %d features.", *features.shape)
        return fit.FitInputs(
            features=features,
            targets=targets,
            plain=heads.plain_head_params(student_vars, split),
            max_terms=m.max_terms or None,
            thresh=m.thresh,
            key=_phase_keys(config)[0],
        )

    head_params, stats = load_or_fit_heads(config, out_dir, make_inputs, score)
    arms_path = os.path.join(out_dir, ARMS_FILE)
    arms = read_arms(arms_path)
    context = ArmContext(config, parts, split, body_vars, state.pool, score)
    for seed in range(m.seeds):
        for mode in m.modes:
            for name in m.heads:
                if (name, mode, seed) in arms:
                    continue
                record = run_arm(context, name, head_params[name], mode, seed)
                arms[(name, mode, seed)] = record
                logging.info("Arm %s", record)
                if reporting.is_primary():
                    with open(arms_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
    summary = dict(
        workdir=os.path.abspath(workdir),
        student_arch=config.student.arch,
        dataset=config.dataset.name,
        pool_images=len(images),
        num_features=split.num_features,
        finetune_steps=finetune.total_steps(config),
        protocol=reporting.jsonable(m.to_dict()),
        heads=summarize(config, stats, arms),
        seconds=time.perf_counter() - start,
    )
    if reporting.is_primary():
        with open(os.path.join(out_dir, reporting.SUMMARY_FILE), "w") as f:
            json.dump(reporting.jsonable(summary), f, indent=2, sort_keys=True)
        with open(os.path.join(out_dir, RESULTS_FILE), "w") as f:
            f.write(results_table(config, summary) + "\n")
    logging.info("MARS head results:\n%s", results_table(config, summary))
    return summary


def _phase_keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """The phase's keys: (the random head's hidden units, the arms' root)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), PHASE_STREAM)
    fit_key, arms_key = jax.random.split(key)
    return fit_key, arms_key


@dataclasses.dataclass
class ArmContext:
    """What every fine-tuning arm of a phase shares.

    Attributes:
      config: the run's config.
      parts: its components (teacher, info).
      split: the student cut into body and head.
      body_vars: the trained body's variables.
      pool: the run's pool.
      score: `score(head name, head params, variables) -> test accuracy`.
      compiled: (head, mode) -> (jitted step, optimizer), filled by the first seed's arm.

    """

    config: ml_collections.ConfigDict
    parts: components.Components
    split: heads.Split
    body_vars: dict
    pool: pool_lib.Pool
    score: Callable[..., float]
    compiled: dict = dataclasses.field(default_factory=dict)


def run_arm(context: ArmContext, name: str, head_params: dict, mode: str, seed: int) -> dict:
    """Fine-tunes head `name` in `mode` with seed `seed`; returns its record for `arms.jsonl`.

    Seed `s` uses the batches and augmentations of `fold_in(arms key, s)` whatever the head and
    mode. `seconds` includes the step's compilation for the first seed.

    Raises:
      ValueError: a non-finite KD loss, naming the arm and the step.

    """
    start = time.perf_counter()
    config, parts = context.config, context.parts
    model, variables = heads.headed(
        context.split, context.body_vars, head_params, freeze_body=mode == "head"
    )
    if (name, mode) not in context.compiled:
        tx = finetune.make_optimizer(config, mode, variables["params"])
        step = finetune.make_step(config, model, parts.teacher, tx, parts.info)
        context.compiled[name, mode] = (step, tx)
    step, tx = context.compiled[name, mode]
    rng = jax.random.fold_in(_phase_keys(config)[1], seed)
    steps = finetune.total_steps(config)
    variables, losses = finetune.finetune(
        step, variables, tx, context.pool, parts.teacher_vars, rng, steps
    )
    if not np.all(np.isfinite(losses)):
        bad = int(np.flatnonzero(~np.isfinite(losses))[0])
        raise ValueError(
            f"Fine-tuning head {name!r} (mode {mode!r}, seed {seed}): kd_loss is {losses[bad]} "
            f"at step {bad}."
        )
    epoch = config.kd.steps
    return dict(
        head=name,
        mode=mode,
        seed=seed,
        test_accuracy=context.score(name, head_params, variables),
        kd_loss_first_epoch=float(losses[:epoch].mean()),
        kd_loss_last_epoch=float(losses[-epoch:].mean()),
        seconds=time.perf_counter() - start,
    )
