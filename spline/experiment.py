"""MARS initialization against He and Glorot (the logic of ``scripts/spline_experiment.py``).

``run(config, workdir)`` trains the same MLP from (a) the converted MARS fit, (b) He-normal and
(c) Glorot-uniform initialization with the same optimizer, batches and epochs over several seeds,
then writes ``loss_vs_epoch.png``, ``loss_vs_time.png``, ``results.json`` and ``results.md`` (epochs
and seconds to reach the best random-init test loss, final test loss, mean and spread over seeds).
The MARS method's clock starts with the MARS fit and conversion time.

Learning rate (``config.train.select_lr``): False uses ``config.train.learning_rate`` for every
initialization (the first protocol). True chooses each initialization's Adam learning rate from the
same grid ``config.train.lr_grid`` on a validation split carved out of the training data
(``config.train.val_fraction``; the test split is never seen): the whole pipeline (column
filtering, standardization, MARS fit and conversion) is rerun on the reduced training split, each
learning rate trains for the same epochs over the same seeds, and the one with the lowest
seed-mean validation loss (minimum over epochs) is kept; the test curves are then measured with it
on the full training split.

Regression data are standardized (inputs and targets, training statistics); losses are test MSE
in standardized units. Classification (digits) fits MARS to one-hot targets, converts, then refits
the output layer by multinomial logistic regression on the hidden features; the loss is test
cross-entropy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from spline.convert import min_widths, to_dense
from spline.init import MLP
from spline.mars import MARS

METHODS = ("mars", "he", "glorot")
RANDOM_INITS: dict[str, Callable] = {
    "he": nn.initializers.he_normal(),
    "glorot": nn.initializers.glorot_uniform(),
}


@dataclasses.dataclass
class Data:
    """A train/test split as float64 numpy arrays.

    Attributes:
      x_train: [N, d]; y_train: [N] float targets or int labels; likewise the test arrays.
      classification: whether y are class labels.
      num_classes: number of classes (0 for regression).

    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classification: bool
    num_classes: int = 0


def _split(x, y, test_fraction: float, seed: int, classification: bool) -> Data:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    te, tr = idx[:n_test], idx[n_test:]
    num_classes = int(y.max()) + 1 if classification else 0
    return Data(x[tr], y[tr], x[te], y[te], classification, num_classes)


def _load_diabetes(cfg):
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return _split(x, y, cfg.test_fraction, cfg.split_seed, False)


def _load_friedman1(cfg):
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(
        n_samples=cfg.n_samples, n_features=cfg.n_features, noise=cfg.noise, random_state=0
    )
    return _split(x, y, cfg.test_fraction, cfg.split_seed, False)


def _load_digits(cfg):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    # Constant pixels (always 0 in the data) carry nothing and MARS rejects constant columns.
    x = x[:, np.ptp(x, axis=0) > 0]
    return _split(x.astype(np.float64), y.astype(np.int64), cfg.test_fraction, cfg.split_seed, True)


def wine_quality_arrays(data_source) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, 11] and quality [N] from a TFDS ``wine_quality`` data source split."""
    rows = [data_source[i] for i in range(len(data_source))]
    names = sorted(rows[0]["features"].keys())
    x = np.array([[float(r["features"][k]) for k in names] for r in rows], dtype=np.float64)
    y = np.array([float(r["quality"]) for r in rows], dtype=np.float64)
    return x, y


def _load_wine_quality(cfg):
    # TFDS without TensorFlow: data_source reads prepared array_record files. Preparing needs a
    # download (users online: tfds.builder("wine_quality_np/white").download_and_prepare(
    # file_format="array_record")).
    import tensorflow_datasets as tfds

    from spline import wine_quality  # noqa: F401  (registers the TensorFlow-free builder)

    source = tfds.data_source(cfg.tfds_name, split="train", data_dir=cfg.data_dir or None)
    x, y = wine_quality_arrays(source)
    return _split(x, y, cfg.test_fraction, cfg.split_seed, False)


DATASETS: dict[str, Callable[[ml_collections.ConfigDict], Data]] = {
    "diabetes": _load_diabetes,
    "friedman1": _load_friedman1,
    "digits": _load_digits,
    "wine_quality": _load_wine_quality,
}


def load_data(cfg: ml_collections.ConfigDict) -> Data:
    """Load ``cfg.name`` from ``DATASETS``; raises ValueError listing the choices."""
    if cfg.name not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.name!r}; choose from {sorted(DATASETS)}")
    return _drop_constant(DATASETS[cfg.name](cfg))


def _drop_constant(data: Data) -> Data:
    # Drop columns constant on the training split (MARS refuses them; they carry nothing).
    keep = np.ptp(data.x_train, axis=0) > 0
    data.x_train, data.x_test = data.x_train[:, keep], data.x_test[:, keep]
    return data


def validation_split(data: Data, fraction: float, seed: int) -> Data:
    """Carve a validation split out of the training split (the test split is not used).

    Returns:
      ``Data`` whose train arrays are the remaining training rows and whose test arrays are the
      validation rows; columns constant on the remaining rows are dropped.

    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    inner = _split(data.x_train, data.y_train, fraction, seed, data.classification)
    inner.num_classes = data.num_classes
    return _drop_constant(inner)


@dataclasses.dataclass
class Prepared:
    """Standardized arrays for training (float32) and the statistics used."""

    z_train: np.ndarray
    t_train: np.ndarray  # [N, K] standardized targets, or int labels [N]
    z_test: np.ndarray
    t_test: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    outputs: int


INPUT_SCALES = ("column", "global")


def prepare(data: Data, input_scale: str = "column") -> Prepared:
    """Standardize inputs (and regression targets) with training statistics.

    Args:
      data: the split.
      input_scale: ``"column"`` divides each centred input by its own training standard deviation;
        ``"global"`` by one standard deviation over all training inputs (for pixels on a common
        scale: a pixel almost always 0 in training has a tiny std, and a test image that sets it
        would give an input of tens of standard deviations).

    """
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"unknown input_scale {input_scale!r}; choose from {INPUT_SCALES}")
    mean = data.x_train.mean(0)
    if input_scale == "column":
        std = data.x_train.std(0)
    else:
        std = np.full(data.x_train.shape[1], (data.x_train - mean).std())
    if data.classification:
        t_tr, t_te, k = data.y_train, data.y_test, data.num_classes
    else:
        ym, ys = data.y_train.mean(), data.y_train.std()
        t_tr = ((data.y_train - ym) / ys)[:, None]
        t_te = ((data.y_test - ym) / ys)[:, None]
        k = 1
    return Prepared(
        ((data.x_train - mean) / std).astype(np.float32),
        t_tr.astype(np.int32 if data.classification else np.float32),
        ((data.x_test - mean) / std).astype(np.float32),
        t_te.astype(np.int32 if data.classification else np.float32),
        mean,
        std,
        k,
    )


def _loss(classification: bool, out, target):
    if classification:
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(out, target))
    return jnp.mean(jnp.square(out - target))


def mars_init(
    config, data: Data, prep: Prepared, key: jax.Array, model: MARS | None = None
) -> tuple[dict, float, MARS]:
    """Fit MARS, convert to the MLP's parameters (classification: refit the output layer).

    Args:
      model: a MARS model already fitted to ``data`` (skips the fit), or None.

    Returns:
      ``(params, seconds, model)``: seconds covers the fit, the conversion and the refit.

    """
    start = time.perf_counter()
    if model is None:
        if data.classification:
            target = np.eye(data.num_classes)[data.y_train]
        else:
            target = prep.t_train.astype(np.float64)
        model = MARS(
            max_terms=config.mars.max_terms, degree=config.mars.degree, thresh=config.mars.thresh
        ).fit(data.x_train, target)
    widths = list(config.model.widths)
    # Degree 2 is not CPWL: use the documented min-surrogate, refit on the training inputs.
    surrogate = "min" if model.max_degree_ > 1 else None
    need = min_widths(model, surrogate)
    if len(need) > len(widths) or any(n > w for n, w in zip(need, widths, strict=False)):
        raise ValueError(f"MARS needs hidden widths >= {need}, config.model.widths is {widths}")
    params = to_dense(
        model,
        input_mean=prep.x_mean,
        input_std=prep.x_std,
        balance=config.mars.balance,
        widths=widths,
        key=key,
        surrogate=surrogate,
        x=data.x_train if surrogate else None,
    )
    if data.classification:
        params = refit_output_logistic(params, prep.z_train, prep.t_train, config.mars.logistic_c)
    jax.block_until_ready(params)
    return params, time.perf_counter() - start, model


def refit_output_logistic(params: dict, z: np.ndarray, labels: np.ndarray, c: float) -> dict:
    """Replace the last layer by a multinomial logistic regression on the last hidden features.

    Args:
      params: MLP parameters (``Dense_0`` ... ``Dense_L``).
      z: [N, d] network inputs.
      labels: [N] int classes.
      c: inverse L2 strength of scikit-learn's ``LogisticRegression``.

    Returns:
      Parameters with ``Dense_L`` replaced.

    """
    from sklearn.linear_model import LogisticRegression

    n = len(params)
    feats = [params[f"Dense_{i}"]["bias"].shape[0] for i in range(n)]
    hidden = MLP(features=feats[:-1]).apply(
        {"params": {f"Dense_{i}": params[f"Dense_{i}"] for i in range(n - 1)}}, jnp.asarray(z)
    )
    # MLP without its output layer ends in a Dense; the hidden features are its ReLU.
    h = np.maximum(np.asarray(hidden, np.float64), 0.0)
    clf = LogisticRegression(C=c, max_iter=2000).fit(h, labels)
    out = dict(params)
    out[f"Dense_{n - 1}"] = {
        "kernel": jnp.asarray(clf.coef_.T, jnp.float32),
        "bias": jnp.asarray(clf.intercept_, jnp.float32),
    }
    return out


def random_init(name: str, features: list[int], d: int, key: jax.Array) -> dict:
    """He or Glorot kernels, zero biases, for ``MLP(features)`` on d inputs."""
    init = RANDOM_INITS[name]
    mlp = MLP(features=tuple(features), kernel_inits=(init,) * len(features))
    return mlp.init(key, jnp.zeros((1, d), jnp.float32))["params"]


def make_trainer(features: tuple[int, ...], classification: bool, batch: int):
    """Jitted epoch and evaluation functions shared by every method and learning rate.

    Returns:
      ``(init_fn, epoch_fn, eval_fn)``: ``init_fn(params, lr) -> opt_state`` of Adam with the
      learning rate held in the state (``optax.inject_hyperparams``), so one compilation serves
      every learning rate; ``epoch_fn(params, opt_state, z, t, key) -> (params, opt_state, mean
      train loss)`` runs one shuffled epoch of full batches with ``lax.scan``;
      ``eval_fn(params, z, t) -> loss``.

    """
    mlp = MLP(features=features)
    adam = optax.inject_hyperparams(optax.adam)
    opt = adam(learning_rate=0.0)  # update() reads the learning rate from the state

    def init_fn(params, lr: float):
        return adam(learning_rate=lr).init(params)

    def loss_fn(params, z, t):
        return _loss(classification, mlp.apply({"params": params}, z), t)

    @jax.jit
    def epoch_fn(params, opt_state, z, t, key):
        n = z.shape[0]
        steps = n // batch
        order = jax.random.permutation(key, n)[: steps * batch].reshape(steps, batch)

        def step(carry, idx):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p, z[idx], t[idx])
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
        return params, opt_state, jnp.mean(losses)

    return init_fn, epoch_fn, jax.jit(loss_fn)


def train_curve(params, prep: Prepared, trainer, epochs: int, key: jax.Array, lr: float):
    """Train for ``epochs`` at Adam learning rate ``lr``; test loss and cumulative training seconds
    after each epoch.

    Returns:
      ``(test_loss [epochs + 1], seconds [epochs + 1])``, index 0 being the initialization.

    """
    init_fn, epoch_fn, eval_fn = trainer
    z, t = jnp.asarray(prep.z_train), jnp.asarray(prep.t_train)
    zt, tt = jnp.asarray(prep.z_test), jnp.asarray(prep.t_test)
    opt_state = init_fn(params, lr)
    losses = [float(eval_fn(params, zt, tt))]
    seconds = [0.0]
    elapsed = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        params, opt_state, _ = epoch_fn(params, opt_state, z, t, jax.random.fold_in(key, epoch))
        jax.block_until_ready(params)
        elapsed += time.perf_counter() - start
        seconds.append(elapsed)
        losses.append(float(eval_fn(params, zt, tt)))
    return np.array(losses), np.array(seconds)


def _first_reach(curve: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(curve <= target)
    return int(hit[0]) if hit.size else None


def summarize(curves: dict, times: dict, init_seconds: dict) -> dict:
    """The results table.

    Args:
      curves: method -> [seeds, epochs + 1] test losses.
      times: method -> [seeds, epochs + 1] training seconds.
      init_seconds: method -> [seeds] initialization seconds (MARS fit + conversion; 0 else).

    Returns:
      dict with ``target``, the best random-init test loss (minimum over epochs of the seed-mean
      curve, over He and Glorot), and per method: epochs and seconds (initialization included)
      at which its seed-mean curve first reaches the target, the same per seed (mean, std, how many
      seeds reached it), and the initial, final and best test loss (mean, std over seeds).

    """
    random = [m for m in curves if m != "mars"]
    target = min(float(curves[m].mean(0).min()) for m in random) if random else float("nan")
    table = {"target": target, "methods": {}}
    for m, c in curves.items():
        mean_hit = _first_reach(c.mean(0), target)
        epochs, secs = [], []
        for s in range(c.shape[0]):
            e = _first_reach(c[s], target)
            if e is not None:
                epochs.append(e)
                secs.append(float(times[m][s, e] + init_seconds[m][s]))
        mean_secs = (
            float(times[m].mean(0)[mean_hit] + np.mean(init_seconds[m]))
            if mean_hit is not None
            else None
        )
        table["methods"][m] = {
            "epochs_to_target": mean_hit,
            "seconds_to_target": mean_secs,
            "epochs_to_target_seeds_mean": float(np.mean(epochs)) if epochs else None,
            "epochs_to_target_seeds_std": float(np.std(epochs)) if epochs else None,
            "seconds_to_target_seeds_mean": float(np.mean(secs)) if secs else None,
            "seconds_to_target_seeds_std": float(np.std(secs)) if secs else None,
            "seeds_reached": len(epochs),
            "seeds": int(c.shape[0]),
            "init_seconds_mean": float(np.mean(init_seconds[m])),
            "epoch_seconds_mean": float(times[m][:, -1].mean() / max(c.shape[1] - 1, 1)),
            "initial_loss_mean": float(np.mean(c[:, 0])),
            "final_loss_mean": float(np.mean(c[:, -1])),
            "final_loss_std": float(np.std(c[:, -1])),
            "best_loss_mean": float(np.mean(c.min(1))),
            "best_loss_std": float(np.std(c.min(1))),
        }
    return table


def markdown_table(table: dict, loss_name: str) -> str:
    """Render ``summarize``'s table as Markdown."""

    def pm(mean, std, digits):
        return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"

    def val(v, digits):
        return "not reached" if v is None else f"{v:.{digits}f}"

    lines = [
        f"Target: best random-init test {loss_name} (seed-mean curve) = {table['target']:.4f}",
        "",
        "| init | lr | epochs to target | seconds to target | per seed: epochs "
        f"| per seed: seconds | init s | initial {loss_name} | final {loss_name} "
        f"| best {loss_name} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in table["methods"].items():
        seeds = f" ({r['seeds_reached']}/{r['seeds']} seeds)"
        lr = f"{r['learning_rate']:g}" if "learning_rate" in r else "-"
        lines.append(
            f"| {m} | {lr} | {val(r['epochs_to_target'], 0)} | {val(r['seconds_to_target'], 2)} "
            f"| {pm(r['epochs_to_target_seeds_mean'], r['epochs_to_target_seeds_std'], 1)}{seeds} "
            f"| {pm(r['seconds_to_target_seeds_mean'], r['seconds_to_target_seeds_std'], 2)} "
            f"| {r['init_seconds_mean']:.2f} | {r['initial_loss_mean']:.4f} "
            f"| {r['final_loss_mean']:.4f} ± {r['final_loss_std']:.4f} "
            f"| {r['best_loss_mean']:.4f} ± {r['best_loss_std']:.4f} |"
        )
    return "\n".join(lines)


def plot(curves: dict, times: dict, init_seconds: dict, loss_name: str, workdir: str) -> list[str]:
    """Write ``loss_vs_epoch.png`` and ``loss_vs_time.png`` (mean and min-max band over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind in ("epoch", "time"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, c in curves.items():
            mean = c.mean(0)
            if kind == "epoch":
                xs = np.arange(c.shape[1])
            else:
                xs = times[m].mean(0) + np.mean(init_seconds[m])
            ax.plot(xs, mean, label=m)
            ax.fill_between(xs, c.min(0), c.max(0), alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("epoch" if kind == "epoch" else "seconds (MARS fit included)")
        ax.set_ylabel(f"test {loss_name}")
        ax.legend()
        ax.grid(True, alpha=0.3)
        path = os.path.join(workdir, f"loss_vs_{kind}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def select_learning_rates(
    config: ml_collections.ConfigDict, data: Data, features: tuple[int, ...], key: jax.Array
) -> dict:
    """Choose each method's learning rate from ``config.train.lr_grid`` on a validation split.

    The validation rows come out of ``data``'s training split (``validation_split``); MARS is fitted
    and converted on the remaining rows only. Every method trains from the same seeds for
    ``config.train.epochs`` at every grid value.

    Returns:
      method -> ``{"learning_rate", "val_best" [len(grid)], "seconds"}``: the chosen rate (lowest
      seed-mean validation loss, minimum over epochs; ties go to the earlier grid value), that
      criterion for every grid value (inf where training diverged), and the seconds spent.

    """
    grid = tuple(float(lr) for lr in config.train.lr_grid)
    if not grid or min(grid) <= 0:
        raise ValueError(f"lr_grid must hold positive learning rates, got {grid}")
    inner = validation_split(data, config.train.val_fraction, config.dataset.split_seed)
    prep = prepare(inner, config.dataset.input_scale)
    d = prep.z_train.shape[1]
    batch = min(config.train.batch_size, prep.z_train.shape[0])
    trainer = make_trainer(features, inner.classification, batch)
    model = mars_init(config, inner, prep, key)[2] if "mars" in config.methods else None
    out = {}
    for m in config.methods:
        start = time.perf_counter()
        curves: dict[float, list] = {lr: [] for lr in grid}
        for seed in range(config.num_seeds):
            k_init, k_train = jax.random.split(jax.random.fold_in(key, seed))
            if m == "mars":
                params = mars_init(config, inner, prep, k_init, model)[0]
            else:
                params = random_init(m, list(features), d, k_init)
            for lr in grid:
                c, _ = train_curve(params, prep, trainer, config.train.epochs, k_train, lr)
                curves[lr].append(np.where(np.isfinite(c), c, np.inf))
        val = [float(np.mean(curves[lr], 0).min()) for lr in grid]
        out[m] = {
            "learning_rate": grid[int(np.argmin(val))],
            "val_best": val,
            "seconds": time.perf_counter() - start,
        }
        logging.info("%s: validation best by lr %s -> lr %g", m, val, out[m]["learning_rate"])
    return out


def selection_table(selection: dict, grid, loss_name: str) -> str:
    """Render ``select_learning_rates``'s validation losses as Markdown (chosen value in bold)."""
    lines = [
        f"Validation {loss_name} (seed-mean, best epoch) by learning rate:",
        "",
        "| init | " + " | ".join(f"lr {lr:g}" for lr in grid) + " | chosen |",
        "|---|" + "---|" * (len(grid) + 1),
    ]
    for m, r in selection.items():
        cells = [
            f"**{v:.4f}**" if lr == r["learning_rate"] else f"{v:.4f}"
            for lr, v in zip(grid, r["val_best"], strict=True)
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {r['learning_rate']:g} |")
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run the whole comparison and write plots and tables to ``workdir``.

    Returns:
      The results dict (also written to ``results.json``).

    """
    os.makedirs(workdir, exist_ok=True)
    for m in config.methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
    data = load_data(config.dataset)
    prep = prepare(data, config.dataset.input_scale)
    d = prep.z_train.shape[1]
    features = (*config.model.widths, prep.outputs)
    batch = min(config.train.batch_size, prep.z_train.shape[0])
    trainer = make_trainer(features, data.classification, batch)
    loss_name = "cross-entropy" if data.classification else "MSE"
    root = jax.random.key(config.seed)
    selection = {}
    if config.train.select_lr:
        # Its own keys, so that the test runs use the same seeds under either protocol.
        (select_root,) = jax.random.split(root, 1)
        selection = select_learning_rates(config, data, features, select_root)
        lrs = {m: selection[m]["learning_rate"] for m in config.methods}
    else:
        lrs = dict.fromkeys(config.methods, float(config.train.learning_rate))
    curves: dict[str, list] = {m: [] for m in config.methods}
    times: dict[str, list] = {m: [] for m in config.methods}
    init_seconds: dict[str, list] = {m: [] for m in config.methods}
    # Compile once before timing anything (identical shapes for every method and seed); the MARS
    # fit's own jitted functions are compiled by a first, untimed fit.
    warm = random_init("he", list(features), d, root)
    train_curve(warm, prep, trainer, 1, root, lrs[config.methods[0]])
    if "mars" in config.methods:
        mars_init(config, data, prep, root)
    mars_info = {}
    for seed in range(config.num_seeds):
        key = jax.random.fold_in(root, seed)
        k_init, k_train = jax.random.split(key)
        for m in config.methods:
            if m == "mars":
                params, secs, model = mars_init(config, data, prep, k_init)
                mars_info = {
                    "terms": len(model.terms_),
                    "gcv": model.gcv_,
                    "rsq": model.rsq_,
                    "fit_seconds": model.fit_time_,
                }
            else:
                params, secs = random_init(m, list(features), d, k_init), 0.0
            c, t = train_curve(params, prep, trainer, config.train.epochs, k_train, lrs[m])
            curves[m].append(c)
            times[m].append(t)
            init_seconds[m].append(secs)
            logging.info("seed %d %s: test %s %.4f -> %.4f", seed, m, loss_name, c[0], c[-1])
    curves_a = {m: np.stack(v) for m, v in curves.items()}
    times_a = {m: np.stack(v) for m, v in times.items()}
    init_a = {m: np.array(v) for m, v in init_seconds.items()}
    table = summarize(curves_a, times_a, init_a)
    for m in config.methods:
        table["methods"][m]["learning_rate"] = lrs[m]
    table["selection"] = selection
    table["mars"] = mars_info
    table["loss"] = loss_name
    table["dataset"] = config.dataset.name
    table["plots"] = plot(curves_a, times_a, init_a, loss_name, workdir)
    md = markdown_table(table, loss_name)
    if selection:
        md += "\n\n" + selection_table(selection, config.train.lr_grid, loss_name)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({**table, "curves": {m: c.tolist() for m, c in curves_a.items()}}, f, indent=1)
    logging.info("results:\n%s", md)
    return table
