"""The named methods of the paper's table: one record each, everything else derived from them.

A record (`NamedMethod`) says what a method is: its name (the config argument of
`configs/dfkd_<dataset>.py`), its table label, its preset (the function that turns a distillation
config into the method's, with the original code's settings), a one-line summary, and what the
trainer and the benchmark need to know of it. `METHODS`, `BASELINE_METHODS`, `BENCH_METHODS`,
`GENERATIVE_BASELINES`, `SINGLE_SEED_METHODS` and `LABELS` are derived from `REGISTRY`; adding a
method is its synthesis module (`fastdfkd_jax.synthesis.SYNTHESIZERS`), its preset and record here,
and its tests. `fastdfkd --list_methods` prints them.
"""

import dataclasses
from collections.abc import Callable

import ml_collections

from fastdfkd_jax import data, synthesis
from fastdfkd_jax.synthesis import baseline_losses

Preset = Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]


def fast(config: ml_collections.ConfigDict, g_steps: int) -> ml_collections.ConfigDict:
    """Fast-2/5/10 with the original's per-variant learning rates (meta lr = lr_g * g_steps)."""
    lr_z, lr_g = FAST_LEARNING_RATES[g_steps]
    config.synthesis.method = "fast"
    f = config.synthesis.fast
    f.g_steps, f.lr_z, f.lr_g, f.meta_lr = g_steps, lr_z, lr_g, lr_g * g_steps
    config.method = f"fast{g_steps}"
    return config


# g_steps -> (lr_z, lr_g) of the original's Fast-2/5/10 scripts.
FAST_LEARNING_RATES = {2: (0.015, 5e-3), 5: (0.01, 3e-3), 10: (0.01, 2e-3)}


def strategy(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The paper's ablations of the current Fast-k config: 'sequential' (one generator trained in
    place across batches, the original's synthesis/fast.py: no meta step, no reset_l0) or
    'independent' (a fresh generator for every batch).
    """
    config.synthesis.fast.strategy = name
    config.synthesis.fast.reset_l0_epoch = -1  # neither has a meta generator to reset
    config.method = f"{config.method}_{name}"
    return config


def deepinv(config: ml_collections.ConfigDict, steps: int = 2000) -> ml_collections.ConfigDict:
    """DeepInv-2k as the original's DeepInvSyntheiszer: pixels optimized from noise with
    Adam(lr 0.1, betas 0.5/0.99), one roll jitter and one flip for the whole batch, loss
    10 * (L_bn(teacher) - 0.001 L_bn(student)) + CE - jsdiv_clamped(T=3), the adversarial term on
    from the first batch. Differs from the original only by returning each batch's lowest-loss
    iterate (`return_iterate`). The paper's row has 2000 steps (deepinv_cifar.sh: 1000).
    """
    s = config.synthesis
    s.method = "deepinversion"
    s.deepinversion.update(dict(steps=steps, lr=0.1, betas=(0.5, 0.99)))
    s.deepinversion.student_bn = baseline_losses.DEEPINV_STUDENT_BN
    s.bn, s.oh, s.adv, s.adversarial, s.bn_momentum = 10.0, 1.0, 1.0, "jsdiv_clamped", 0.0
    s.adv_start = "first_call"
    s.augment.kind = "jitter"
    s.augment.flip_whole_batch = True
    config.method = f"deepinv{steps // 1000}k" if steps % 1000 == 0 else f"deepinv{steps}"
    return config


def cmi(config: ml_collections.ConfigDict, steps: int = 500) -> ml_collections.ConfigDict:
    """CMI-500 with the values of the original's cmi_cifar.sh: a generator re-initialized for every
    batch and trained `steps` steps (with z) by Adam(1e-3, betas 0.5/0.999); loss BN + CE + 0.5
    masked KL (from the first batch) + 0.8 contrastive loss (head 256, temperature 0.2, bank of
    40960 feature pairs, 4096 negatives). The script has 200 steps; the paper's row 500.
    """
    s = config.synthesis
    s.method = "cmi"
    s.cmi.update(dict(steps=steps, lr_g=1e-3, lr_z=1e-3, betas=(0.5, 0.999)))
    s.bn, s.oh, s.adv, s.adversarial, s.bn_momentum = 1.0, 1.0, 0.5, "kl", 0.0
    s.adv_start = "first_call"
    config.method = f"cmi{steps}"
    return config


# The generative baselines' weights in the original's scripts (dafl/zskt/dfq_cifar.sh):
# name -> (adv, bn, oh, act, balance, student steps per generator step).
GENERATIVE = {
    "dafl": (0.0, 0.0, 1.0, 0.001, 20.0, 5),
    "zskt": (1.0, 0.0, 0.0, 0.0, 0.0, 5),
    "dfq": (1.0, 1.0, 1.0, 0.0, 20.0, 10),
}
# The original's DAFL generator has twice the latent size of the others' (512 against 256).
DAFL_LATENT_FACTOR = 2
# The KD temperature of the generative baselines: the original's datafree_kd.py replaces the KD
# criterion of DAFL, ZSKT and DFQ by `KLDiv()` (T = 1), so their scripts' `--T 20` never applies.
GENERATIVE_KD_TEMPERATURE = 1.0


def generative(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """DAFL, ZSKT or DFQ as the original's GenerativeSynthesizer: one persistent generator trained
    continuously by Adam(1e-3, betas 0.5/0.999), one generator step per round, then
    `kd_steps_per_round` student steps, each on a fresh batch of the generator (no augmentation).
    The generator's loss: adv * (-KL(teacher || student), unmasked) + bn * L_bn + oh * CE(teacher,
    its own argmax) + act * (-mean |features|) + balance * (negative entropy of the batch's mean
    prediction). The adversary is the student (`adversary`: the original's is the teacher itself,
    which zeroes the term). The student is distilled at T = 1 (`GENERATIVE_KD_TEMPERATURE`), as the
    original's criterion for these methods.
    """
    adv, bn, oh, act, balance, kd_per_round = GENERATIVE[name]
    s = config.synthesis
    s.method = "generative"
    s.generative.update(dict(g_steps=1, lr_g=1e-3, betas=(0.5, 0.999)))
    s.generative.act, s.generative.balance = act, balance
    s.generative.kd_steps_per_round = kd_per_round
    s.adv, s.bn, s.oh, s.bn_momentum = adv, bn, oh, 0.0
    s.adv_start = "first_call"
    if name == "dafl":
        s.generator.nz *= DAFL_LATENT_FACTOR
    config.kd.augment.padding, config.kd.augment.flip = 0, False
    config.kd.temperature = GENERATIVE_KD_TEMPERATURE
    config.method = name
    return config


# NAYER's synthesis batch against FastDFKD's in the original scripts (400 against 256): a dataset's
# NAYER batch is its FastDFKD batch times this, rounded to whole groups of one image per class.
NAYER_BATCH_FACTOR = 400 / 256
# Generator steps per batch of the original's scripts: CIFAR-10's 30, and CIFAR-100's 40 for data
# sets of 100 classes or more.
NAYER_G_STEPS, NAYER_G_STEPS_MANY_CLASSES, MANY_CLASSES = 30, 40, 100
# Its loss weights (nayer_*.sh): adv, bn, oh; the BN memory's momentum (its default bn_mmt).
NAYER_WEIGHTS = (1.33, 10.0, 0.5)
NAYER_BN_MOMENTUM = 0.9


def nayer(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """NAYER as the original's synthesizer: label embeddings through noisy layers redrawn every
    batch into a generator trained in place (rebuilt every 10 epochs counted from the start and
    from the end of warmup: the original's g_life test); 30 Adam steps per batch (lr 4e-3,
    betas 0.5/0.999; 40 for 100 classes); loss 10 BN (momentum 0.9) + 0.5 CE + 1.33 masked KL
    from the first KD epoch; 10 batches per warmup epoch, 2 after, all before the epoch's
    student steps. The student's schedule is the dataset's (the benchmark compares methods at
    one schedule); `nayer_cifar_protocol` is the original scripts' on CIFAR.
    """
    num_classes = data.get_info(config.dataset.name).num_classes
    s = config.synthesis
    s.method = "nayer"
    groups = max(1, round(s.batch_size * NAYER_BATCH_FACTOR / num_classes))
    s.batch_size = groups * num_classes
    s.nayer.g_steps = NAYER_G_STEPS_MANY_CLASSES if num_classes >= MANY_CLASSES else NAYER_G_STEPS
    s.adv, s.bn, s.oh = NAYER_WEIGHTS
    s.bn_momentum, s.adversarial = NAYER_BN_MOMENTUM, "kl"
    s.adv_start = "with_kd"  # its `ep > warmup` with ep counted from 1: the first KD epoch
    config.pool.capacity = synthesis.images_in_run(config)  # all of them, as the original's pool
    config.method = "nayer"
    return config


def nayer_cifar_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The student schedule of the original's nayer_100.sh: 120 epochs (20 warmup), KD batches of
    512 at T = 20, SGD 0.2 with a cosine to 2e-4 over the KD epochs.
    """
    config.epochs, config.warmup = 120, 20
    config.kd.batch_size, config.kd.temperature = 512, 20.0
    config.kd.optimizer.learning_rate, config.kd.optimizer.end_learning_rate = 0.2, 2e-4
    config.pool.capacity = synthesis.images_in_run(config)
    return config


def exact(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The exact (second-order) meta-gradient of the summed inner losses instead of the original's
    first-order approximation of it (their difference: the second-order terms). Measured worse
    than first-order with Adam inner steps (docs/benchmarks.md): the research option, not the
    paper's method.
    """
    config.synthesis.fast.meta_gradient = "exact"
    config.method = f"{config.method}_exact"
    return config


@dataclasses.dataclass(frozen=True)
class NamedMethod:
    """One row of the paper's table.

    Attributes:
      name: the config argument (`configs/dfkd_<dataset>.py:<name>`).
      label: the table's label.
      preset: the distillation config -> the method's (the original's settings).
      summary: one line (`fastdfkd --list_methods`); docs/benchmarks.md has the details.
      baseline: the original runs it with its baseline scripts' student schedule (CIFAR presets:
        `config_blocks.baseline_cifar_protocol`).
      cifar_protocol: the student schedule of its own original scripts on CIFAR, where it is
        neither FastDFKD's nor the baselines' (CIFAR presets; None: by `baseline`).
      benchmark: run by the benchmark by default (`BENCH_METHODS`).
      single_seed: too slow to repeat: the benchmark runs it with its first seed only.
      generative: a generative baseline that Fast-5 must beat on accuracy at less time.
    """

    name: str
    label: str
    preset: Preset
    summary: str
    baseline: bool = False
    cifar_protocol: Preset | None = None
    benchmark: bool = True
    single_seed: bool = False
    generative: bool = False


# The paper's table, in its order.
REGISTRY: dict[str, NamedMethod] = {
    m.name: m
    for m in (
        NamedMethod(
            "deepinv2k",
            "DeepInv-2k",
            lambda c: deepinv(c, 2000),
            "DeepInversion: each batch's pixels optimized from noise, 2000 Adam steps",
            baseline=True,
            single_seed=True,
        ),
        NamedMethod(
            "cmi500",
            "CMI-500",
            lambda c: cmi(c, 500),
            "contrastive model inversion: a fresh generator per batch, 500 steps, a memory bank",
            baseline=True,
            single_seed=True,
        ),
        NamedMethod(
            "dafl",
            "DAFL",
            lambda c: generative(c, "dafl"),
            "one generator trained alongside the student: CE, activation, class balance",
            baseline=True,
            generative=True,
        ),
        NamedMethod(
            "zskt",
            "ZSKT",
            lambda c: generative(c, "zskt"),
            "one generator trained adversarially against the student",
            baseline=True,
            generative=True,
        ),
        NamedMethod(
            "dfq",
            "DFQ",
            lambda c: generative(c, "dfq"),
            "one generator: adversarial + BN statistics + CE + class balance",
            baseline=True,
            generative=True,
        ),
        NamedMethod(
            "nayer",
            "NAYER",
            nayer,
            "label embeddings through per-batch noisy layers; a generator trained in place",
            cifar_protocol=nayer_cifar_protocol,
        ),
        NamedMethod(
            "fast2",
            "Fast-2",
            lambda c: fast(c, 2),
            "FastDFKD: a meta-learned generator, 2 inner steps per batch",
        ),
        NamedMethod(
            "fast5",
            "Fast-5",
            lambda c: fast(c, 5),
            "FastDFKD: a meta-learned generator, 5 inner steps per batch",
        ),
        NamedMethod(
            "fast10",
            "Fast-10",
            lambda c: fast(c, 10),
            "FastDFKD: a meta-learned generator, 10 inner steps per batch",
        ),
        NamedMethod(
            "fast5_exact",
            "Fast-5 (exact meta-grad)",
            lambda c: exact(fast(c, 5)),
            "Fast-5 with the exact second-order meta-gradient (a research option)",
        ),
        NamedMethod(
            "fast5_sequential",
            "Fast-5 (sequential reuse)",
            lambda c: strategy(fast(c, 5), "sequential"),
            "ablation: one generator trained in place from batch to batch, no meta step",
        ),
        NamedMethod(
            "fast5_independent",
            "Fast-5 (independent)",
            lambda c: strategy(fast(c, 5), "independent"),
            "ablation: a freshly initialized generator for every batch",
        ),
    )
}

METHODS: dict[str, Preset] = {name: m.preset for name, m in REGISTRY.items()}
LABELS = {name: m.label for name, m in REGISTRY.items()}
# The methods the original runs with the student schedule of its baseline scripts.
BASELINE_METHODS = tuple(name for name, m in REGISTRY.items() if m.baseline)
BENCH_METHODS = tuple(name for name, m in REGISTRY.items() if m.benchmark)
SINGLE_SEED_METHODS = tuple(name for name, m in REGISTRY.items() if m.single_seed)
# The generative baselines Fast-5 must beat on accuracy at less synthesis time (the paper's CIFAR
# table shows it for all three).
GENERATIVE_BASELINES = tuple(name for name, m in REGISTRY.items() if m.generative)


def label(method: str) -> str:
    """The table label of `method` (its name when it has no record)."""
    return LABELS.get(method, method)


def apply_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """Applies a method name of `METHODS` to a distillation config."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method](config)


def listing() -> str:
    """One line per method: name, label, summary (`fastdfkd --list_methods`)."""
    width = max(len(n) for n in REGISTRY)
    return "\n".join(f"{m.name:<{width}}  {m.label:<26}  {m.summary}" for m in REGISTRY.values())
