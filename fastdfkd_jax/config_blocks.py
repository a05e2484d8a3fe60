"""Config blocks shared by the files in `configs/`, the config argument parser, loading by path.

Config files (`configs/<job>_<dataset>.py`) are loaded by path, never imported as a package; they
import only this module (and the library) and never each other. Each defines
`get_config(arg=None)` whose `arg` (the text after `:` in `--config=FILE:ARG`) is parsed by
`parse_arg` into variants, big_vision style: comma-separated `key=value` pairs and bare words, e.g.
`fast5,runlocal` or `method=fast5,runlocal`. A bare word is a boolean flag set to True (`runlocal`)
or, when it is one of a key's `choices`, that key's value (`fast5` for `method`).

Batch sizes in every config (`train.batch_size`, `synthesis.batch_size`, `kd.batch_size`,
`eval_batch_size`) are GLOBAL: summed over all devices of all processes. Each device computes
`batch_size / mesh.data` rows (`mesh.data = -1`: every device), which must divide evenly. Learning
rates are for that global batch; an optimizer block's `lr_scaling` ('none' | 'linear' against
`reference_batch_size`) says whether they change when the global batch does (docs/scaling.md).
"""

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from fastdfkd_jax import backend, optim, precision, sharding
from fastdfkd_jax.synthesis import baseline_losses

# -- the config argument ------------------------------------------------------------------------

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _convert(key: str, text: str, default: Any) -> Any:
    """`text` as the type of `default` (bool, int, float or str)."""
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"Config argument {key}={text!r} is not a boolean.")
        return text.lower() in _TRUE
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(
            f"Config argument {key}={text!r} is not a {type(default).__name__}."
        ) from None


def parse_arg(
    arg: str | None,
    *,
    choices: Mapping[str, Sequence[str]] | None = None,
    **defaults: Any,
) -> ml_collections.ConfigDict:
    """The config argument `arg` parsed into `defaults` (every key must have one).

    Args:
      arg: e.g. `'fast5,runlocal'`, `'method=fast5,runlocal'`, `'cifar10,fast5,wrn40_2-wrn16_1'`;
        None or '' gives the defaults.
      choices: key -> the values a bare word may select (values must not be shared between keys).
      **defaults: every accepted key with its default value (its type is the value's type).

    Returns:
      A ConfigDict of the keys with their parsed values.

    Raises:
      ValueError: an unknown key or word, a value of the wrong type, or a value outside `choices`.
    """
    choices = dict(choices or {})
    values = dict(defaults)
    for token in (t.strip() for t in (arg or "").split(",")):
        if not token:
            continue
        if "=" in token:
            key, text = (s.strip() for s in token.split("=", 1))
            if key not in defaults:
                raise ValueError(
                    f"Unknown config argument key {key!r}; the keys are {sorted(defaults)}."
                )
            values[key] = _convert(key, text, defaults[key])
            continue
        owners = [k for k, allowed in choices.items() if token in allowed]
        if isinstance(defaults.get(token), bool):
            values[token] = True
        elif len(owners) == 1:
            values[owners[0]] = token
        else:
            flags = sorted(k for k, v in defaults.items() if isinstance(v, bool))
            raise ValueError(
                f"Unknown config argument {token!r}; flags: {flags}; values: "
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(choices.items()))
                + "."
            )
    for key, allowed in choices.items():
        if values[key] not in allowed:
            raise ValueError(
                f"Config argument {key}={values[key]!r} is not one of {', '.join(allowed)}."
            )
    return ml_collections.ConfigDict(values)


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of `spec` = `'path/to/file.py'` or `'path/to/file.py:arg'`, loaded by path.

    What `--config=SPEC` gives on the command line, before `--config.x=...` overrides.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"No config file at {path!r} (from {spec!r}).")
    name = "_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def repo_path(config_file: str, relative: str) -> str:
    """The absolute path of `relative` to the repository root, from a config file's `__file__`
    (config files live in `<root>/configs/`).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
    return os.path.join(root, relative)


def sibling(config_file: str, name: str) -> str:
    """The absolute path of config file `name` in the folder of `config_file` (a `__file__`)."""
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), name)


# -- blocks every job has -------------------------------------------------------------------------


def base_config(job: str) -> ml_collections.ConfigDict:
    """The keys every run has; a config adds its job's blocks."""
    config = ml_collections.ConfigDict()
    config.job = job
    config.seed = 0
    config.progress_bar = True
    config.eval_batch_size = 500  # global, like every batch size
    config.mesh = sharding.mesh_config()  # data=-1: one `data` axis over every device
    config.distributed = sharding.distributed_config()
    config.checkpoint = ml_collections.ConfigDict(dict(max_to_keep=2, every_epochs=1))
    # The numeric policy of every step (fastdfkd_jax/precision.py): 'highest' | 'tensorfloat32'
    # (TF32 matmuls on GPUs; identical to 'highest' on CPUs) | 'bfloat16' (mixed precision).
    config.precision = precision.DEFAULT_POLICY
    # JAX's persistent compilation cache: a second run of a config loads its executables.
    # compilation_cache_dir '' = the process's cache if it has one, else ~/.cache/fastdfkd_jax/xla
    # ($FASTDFKD_CACHE_DIR or $XDG_CACHE_HOME move it; fastdfkd_jax/compilation.py).
    config.compilation_cache = True
    config.compilation_cache_dir = ""
    return config


def optimizer(**overrides: Any) -> ml_collections.ConfigDict:
    """An optimizer block; its learning rates are for the job's global batch.

    `lr_scaling='none'` (the default: the rate is used as given, whatever the batch) or 'linear'
    (rates multiplied by `global_batch / reference_batch_size`; see `optim.scale_learning_rate`).
    """
    cfg = optim.optimizer_config()
    cfg.lr_scaling = "none"
    cfg.reference_batch_size = 0
    cfg.update(overrides)
    return cfg


def dataset(name: str) -> ml_collections.ConfigDict:
    """The dataset block; `data_dir` '' means $FASTDFKD_DATA_DIR or TFDS's default directory."""
    return ml_collections.ConfigDict(dict(name=name, data_dir=""))


# -- the teacher job ------------------------------------------------------------------------------


def teacher_config(
    dataset_name: str,
    arch: str,
    *,
    epochs: int,
    batch_size: int,
    opt: ml_collections.ConfigDict,
    padding: int,
    flip: bool,
) -> ml_collections.ConfigDict:
    """A teacher-training config: `arch` on `dataset_name`, cross-entropy, crop + flip."""
    config = base_config("teacher")
    config.dataset = dataset(dataset_name)
    config.model = ml_collections.ConfigDict(dict(arch=arch))
    config.train = ml_collections.ConfigDict()
    config.train.epochs = epochs
    config.train.batch_size = batch_size
    config.train.optimizer = opt
    config.train.augment = ml_collections.ConfigDict(dict(padding=padding, flip=flip))
    return config


def teacher_runlocal(config: ml_collections.ConfigDict, arch: str, epochs: int) -> None:
    """A teacher run of seconds: the small `arch` for `epochs` epochs on one device."""
    config.model.arch = arch
    config.train.epochs = epochs
    config.mesh.data = 1
    config.progress_bar = False


# -- the data-free distillation job ---------------------------------------------------------------

# The CIFAR teacher-student pairs of the paper's tables -> (adv, oh) of the original's
# scripts/fast_cifar.sh.
CIFAR_PAIRS = {
    "resnet34-resnet18": (1.33, 0.5),
    "vgg11_bn-resnet18": (1.0, 0.5),
    "wrn40_2-wrn16_1": (1.1, 0.4),
    "wrn40_2-wrn40_1": (1.1, 0.4),
    "wrn40_2-wrn16_2": (1.1, 0.4),
}


def dfkd_config(
    dataset_name: str, teacher_arch: str, student_arch: str
) -> ml_collections.ConfigDict:
    """Every key of a distillation run, with the FastDFKD defaults of the original's
    scripts/fast_cifar.sh (Fast-5 on CIFAR), for `dataset_name`.
    """
    config = base_config("dfkd")
    config.method = "fast5"
    config.dataset = dataset(dataset_name)
    # ImageNet's evaluation and synthesis size, NYUv2's training crop (0: the dataset's own;
    # run_data.dataset_info).
    config.dataset.image_size = 0
    # True only in the runlocal variants of the ImageNet and NYUv2 configs: generated test data
    # and a randomly initialized teacher (fastdfkd_jax.smoke), never for results.
    config.smoke_test = False
    config.teacher = ml_collections.ConfigDict(dict(arch=teacher_arch, checkpoint=""))
    config.student = ml_collections.ConfigDict(dict(arch=student_arch))
    config.epochs = 220
    config.warmup = 20
    config.eval_every_epochs = 1
    config.sample_every_epochs = 10
    config.sample_grid_size = 64
    config.sample_upscale = 1
    config.checkpoint.every_epochs = 5

    s = config.synthesis = ml_collections.ConfigDict()
    s.method = "fast"  # a key of fastdfkd_jax.synthesis.SYNTHESIZERS
    s.batch_size = 256  # global: per device 256 / mesh.data
    s.g_steps = 5
    s.lr_g = 3e-3
    s.lr_z = 0.01
    s.meta_lr = 1.5e-2  # lr_g * g_steps in the original
    s.lr_x = 0.1  # DeepInversion's pixel learning rate
    s.inner_betas = (0.5, 0.999)
    s.meta_betas = (0.5, 0.999)
    # The inner optimizer of FastDFKD: 'adam' (the original), 'nsgd' (normalized gradient
    # descent: each step moves a parameter group by lr * sqrt(size) * g / ||g||, the RMS step of
    # Adam's, but a smooth function of the gradient) or 'adam_held_normalizer' (Adam's values,
    # its normalizer held constant when the exact meta-gradient differentiates the steps):
    # research options for the exact meta-gradient (synthesis/inner_optimizers.py).
    s.inner_optimizer = "adam"
    s.inner_eps_root = 1e-8  # Adam's eps_root for the exact meta-gradient only (original: none)
    s.meta_gradient = "first_order"  # 'exact' | 'first_order' | 'reptile'
    s.reptile_factor = 67.0  # the original's hard-coded Reptile scale
    # How each batch's generator starts (the paper's three strategies): 'meta' (FastDFKD: from the
    # meta-learned generator, which a meta step then updates), 'sequential' (the original's
    # synthesis/fast.py: one generator trained in place from batch to batch, no meta step) or
    # 'independent' (a freshly initialized generator for every batch).
    s.strategy = "meta"
    s.remat = False  # jax.checkpoint the inner steps of the exact meta-gradient
    # How the inner steps run, by backend when 'auto' (fastdfkd_jax/backend.py): 'true' unrolls
    # them, one after the other with no loop (~8x faster than a rolled lax.scan on XLA:CPU),
    # 'false' is a rolled lax.scan (compiles once for any g_steps; accelerators). 'auto':
    # unrolled on CPU, rolled elsewhere.
    s.unroll = backend.AUTO
    # DeepInversion only: its steps as host-driven, unrolled chunks of this many steps ('0': one
    # compiled lax.scan over all steps). 'auto': chunks of <= 10 steps on CPU, one scan elsewhere.
    s.chunk_steps = backend.AUTO
    s.bn = 10.0
    s.oh = 0.4
    s.adv = 1.1
    s.bn_momentum = 0.9
    # When the adversarial term switches on: 'before_kd' (epoch warmup - 1: the original FastDFKD,
    # whose `ep >= warmup` counts calls from 1, so the term starts one call before the student's
    # first KD step), 'first_call' (epoch 0: the original DeepInversion, CMI, DAFL, ZSKT, DFQ never
    # gate it) or 'with_kd' (epoch warmup, with the first KD step).
    s.adv_start = "before_kd"
    # 'kl' (FastDFKD and CMI: -KL(teacher || student) on samples where both agree), 'jsdiv_clamped'
    # (the original DeepInversion's `jsdiv`: probabilities clamped to [0.01, 0.99], KL from the
    # mixture; baseline_losses.jsdiv_clamped) or 'js' (the exact Jensen-Shannon divergence), the
    # last two at js_temperature. Generative methods always use the unmasked KL (their original).
    s.adversarial = "kl"
    s.js_temperature = 3.0
    # DeepInversion: the loss subtracts bn * student_bn * (the student's own BN-statistics loss);
    # the original's 0.001 (baseline_losses.deepinversion_bn_loss). 0: no student BN term.
    s.student_bn = 0.0
    # DeepInversion: 'best' returns each batch's lowest-loss iterate (a fix: the original means to
    # but its best_inputs aliases the live pixels) or 'last', what the original returns: the
    # pixels after the last update and clip.
    s.return_iterate = "best"
    # Generative methods (DAFL, ZSKT, DFQ): the student whose disagreement the generator maximizes.
    # 'student' (a fix) or 'teacher' (the original builds them with student=teacher, which makes
    # the adversarial term identically zero).
    s.adversary = "student"
    s.act = 0.0  # DAFL's activation loss weight (-mean |penultimate teacher features|)
    s.balance = 0.0  # DAFL / DFQ information-entropy weight (class balance of the batch)
    # Student steps after each synthesis call: 0 = all of the epoch's kd.steps after one call (pool
    # methods); k > 0 = kd.steps / k rounds of (one synthesis call, k student steps) per epoch (the
    # original's kd_steps of the generative methods: DAFL, ZSKT 5, DFQ 10).
    s.kd_steps_per_round = 0
    s.generator = ml_collections.ConfigDict(dict(arch="generator", nz=256, ngf=64))
    # kind 'crop' (pad and crop), 'jitter' (DeepInversion's roll) or 'resized_crop' (area
    # fraction in `scale`, the original's ImageNet synthesis: (0.75, 1)); flip with each.
    # flip_whole_batch (kind 'jitter'): one coin flip for the whole batch, as the original
    # DeepInversion; False flips each image independently.
    s.augment = ml_collections.ConfigDict(
        dict(kind="crop", padding=4, flip=True, jitter=4, scale=(0.75, 1.0), flip_whole_batch=False)
    )
    # FastDFKD's reset_l0: the 0-based epoch before whose synthesis call the generator layers
    # `reset_layers` are re-initialized (-1: never). The original fires at its call
    # `ep == 120 + warmup` with ep counted from 1: 0-based epoch 120 + warmup - 1 = 139.
    s.reset_l0_epoch = 139
    s.reset_layers = ("l1", "bn0")
    s.reset_std = 0.02
    # Mean of the re-drawn BatchNorm scales: 0.0, the original (its reset_l0 draws the first
    # BatchNorm's scale like the Linear kernel, N(0, reset_std)), or 1.0 (N(1, reset_std), the usual
    # BatchNorm start; a research option: the original's draw is deliberate or not, it is not a bug
    # that breaks the method).
    s.reset_bn_scale_mean = 0.0
    # CMI (contrastive model inversion), the original's cmi_cifar.sh: contrastive weight and
    # temperature, projection head width, memory bank rows, negatives drawn per step, the local
    # view's crop area fraction.
    s.cmi = ml_collections.ConfigDict(
        dict(
            cr=0.8,
            temperature=0.2,
            head_dim=256,
            bank_size=40960,
            n_neg=4096,
            local_scale=(0.25, 1.0),
            # Whose inputs give the instance features (cmi.FEATURE_LAYERS): 'batchnorm' (every
            # BatchNorm's), 'stages' (each ResNet stage's first block's: the inputs of the
            # original's layer1..layer4), or 'auto', the original's rule: 'stages' for a resnet34
            # teacher, 'batchnorm' for every other.
            feature_layers="auto",
        )
    )

    # dtype 'uint8' stores images as the original's 8-bit PNGs; `quantize` 'truncate' is its
    # `(x * 255).astype(uint8)`, 'round' the nearest level.
    config.pool = ml_collections.ConfigDict(
        dict(capacity=256 * 220, dtype="uint8", quantize="truncate")
    )

    kd = config.kd = ml_collections.ConfigDict()
    kd.steps = 400
    kd.batch_size = 256  # global: per device 256 / mesh.data; kd.optimizer's rates are for it
    kd.temperature = 20.0
    # The original steps its cosine scheduler once per epoch (CosineAnnealingLR, T_max = the KD
    # epochs): the rate is held for each epoch's kd.steps steps. False: a new rate every step.
    kd.schedule_per_epoch = True
    # Student steps per compiled call ('auto': 1 on CPU, a scan of up to 10 on accelerators;
    # fastdfkd_jax/backend.py). Results equal one step per call (tests/fastdfkd_jax/test_train.py).
    kd.steps_per_call = backend.AUTO
    kd.optimizer = optimizer(
        name="sgd",
        learning_rate=0.2,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="cosine",
        end_learning_rate=2e-4,
    )
    # kind 'crop' or 'resized_crop' (scale: torchvision's RandomResizedCrop default, the
    # original's ImageNet train transform on the pool).
    kd.augment = ml_collections.ConfigDict(
        dict(kind="crop", padding=4, flip=True, scale=(0.08, 1.0))
    )
    # ZSKT's attention transfer (its paper: 250; the original repository's ZSKT: none): the
    # student loss adds at_weight * baseline_losses.attention_transfer_loss of the inputs of each
    # network's last BatchNorm at every spatial resolution (a WRN's block-group outputs).
    kd.at_weight = 0.0
    config.mars_head = mars_head()
    return config


def mars_head(**overrides: Any) -> ml_collections.ConfigDict:
    """The MARS-head phase of a distillation run (`fastdfkd_jax.mars_head`), off by default.

    After distillation, heads are fit on the student's pooled features of the pool images against
    the teacher's logits (`heads`: 'plain' the student's own head, 'linear' a least-squares refit,
    'mars' MARS converted exactly into a ReLU MLP, 'linear_mars' the linear refit plus MARS on its
    residual, 'random_features' random ReLU units of the MARS head's width with a least-squares
    readout), each fine-tuned by KD on the pool for `epochs` x `kd.steps` steps per `modes` entry
    ('head': the body frozen, 'all': head and body) and seed, with `kd.optimizer` at `lr_factor`
    times its rates. `enabled`: run it at the end of the dfkd job (`fastdfkd_jax.main`); the job
    `mars_head` (`--config.job=mars_head`) runs it on a finished run's workdir. No measurement has
    shown it to help yet (docs/spline.md).
    """
    cfg = ml_collections.ConfigDict(
        dict(
            enabled=False,
            heads=("plain", "linear", "mars", "linear_mars", "random_features"),
            modes=("head", "all"),
            seeds=3,
            max_terms=0,  # 0: earth's default nk, min(200, max(20, 2 D)) + 1 for D features
            thresh=1e-3,  # earth's default forward-pass threshold
            epochs=5,  # fine-tuning steps: epochs * kd.steps, at kd.batch_size
            lr_factor=0.1,  # on kd.optimizer's learning_rate and end_learning_rate
        )
    )
    cfg.update(overrides)
    return cfg


def fast(config: ml_collections.ConfigDict, g_steps: int) -> ml_collections.ConfigDict:
    """Fast-2/5/10 with the original's per-variant learning rates (meta lr = lr_g * g_steps)."""
    lr_z, lr_g = FAST_LEARNING_RATES[g_steps]
    s = config.synthesis
    s.method, s.g_steps, s.lr_z, s.lr_g, s.meta_lr = "fast", g_steps, lr_z, lr_g, lr_g * g_steps
    config.method = f"fast{g_steps}"
    return config


# g_steps -> (lr_z, lr_g) of the original's Fast-2/5/10 scripts.
FAST_LEARNING_RATES = {2: (0.015, 5e-3), 5: (0.01, 3e-3), 10: (0.01, 2e-3)}


def strategy(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The paper's ablations of the current Fast-k config: 'sequential' (one generator trained in
    place across batches, the original's synthesis/fast.py: no meta step, no reset_l0) or
    'independent' (a fresh generator for every batch).
    """
    config.synthesis.strategy = name
    config.synthesis.reset_l0_epoch = -1  # neither has a meta generator to reset
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
    s.method, s.g_steps, s.lr_x, s.inner_betas = "deepinversion", steps, 0.1, (0.5, 0.99)
    s.bn, s.oh, s.adv, s.adversarial, s.bn_momentum = 10.0, 1.0, 1.0, "jsdiv_clamped", 0.0
    s.student_bn = baseline_losses.DEEPINV_STUDENT_BN
    s.adv_start = "first_call"
    s.augment.kind = "jitter"
    s.augment.flip_whole_batch = True
    s.reset_l0_epoch = -1
    config.method = f"deepinv{steps // 1000}k" if steps % 1000 == 0 else f"deepinv{steps}"
    return config


def cmi(config: ml_collections.ConfigDict, steps: int = 500) -> ml_collections.ConfigDict:
    """CMI-500 with the values of the original's cmi_cifar.sh: a generator re-initialized for every
    batch and trained `steps` steps (with z) by Adam(1e-3, betas 0.5/0.999); loss BN + CE + 0.5
    masked KL (from the first batch) + 0.8 contrastive loss (head 256, temperature 0.2, bank of
    40960 feature pairs, 4096 negatives). The script has 200 steps; the paper's row 500.
    """
    s = config.synthesis
    s.method, s.g_steps, s.lr_g, s.lr_z = "cmi", steps, 1e-3, 1e-3
    s.bn, s.oh, s.adv, s.adversarial, s.bn_momentum = 1.0, 1.0, 0.5, "kl", 0.0
    s.adv_start = "first_call"
    s.reset_l0_epoch = -1
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
    s.method, s.g_steps, s.lr_g = "generative", 1, 1e-3
    s.adv, s.bn, s.oh, s.act, s.balance, s.bn_momentum = adv, bn, oh, act, balance, 0.0
    s.kd_steps_per_round = kd_per_round
    s.adv_start = "first_call"
    s.reset_l0_epoch = -1
    if name == "dafl":
        s.generator.nz *= DAFL_LATENT_FACTOR
    config.kd.augment.padding, config.kd.augment.flip = 0, False
    config.kd.temperature = GENERATIVE_KD_TEMPERATURE
    config.method = name
    return config


def exact(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The exact (second-order) meta-gradient of the summed inner losses instead of the original's
    first-order approximation of it (their difference: the second-order terms). Measured worse
    than first-order with Adam inner steps (docs/benchmarks.md): the research option, not the
    paper's method.
    """
    config.synthesis.meta_gradient = "exact"
    config.method = f"{config.method}_exact"
    return config


def baseline_cifar_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The student schedule of the original's deepinv/cmi/dafl/zskt/dfq_cifar.sh: 200 epochs, no
    warmup, SGD at 0.1 (FastDFKD's fast_cifar.sh: 220 epochs, warmup 20, 0.2).
    """
    config.epochs, config.warmup = 200, 0
    config.kd.optimizer.learning_rate = 0.1
    config.pool.capacity = config.synthesis.batch_size * config.epochs
    return config


# Method name (the paper's table rows) -> what it changes in a distillation config.
METHODS: dict[str, Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]] = {
    "fast2": lambda c: fast(c, 2),
    "fast5": lambda c: fast(c, 5),
    "fast10": lambda c: fast(c, 10),
    "fast5_exact": lambda c: exact(fast(c, 5)),
    "fast5_sequential": lambda c: strategy(fast(c, 5), "sequential"),
    "fast5_independent": lambda c: strategy(fast(c, 5), "independent"),
    "deepinv2k": lambda c: deepinv(c, 2000),
    "cmi500": lambda c: cmi(c, 500),
    "dafl": lambda c: generative(c, "dafl"),
    "zskt": lambda c: generative(c, "zskt"),
    "dfq": lambda c: generative(c, "dfq"),
}
# The methods the original runs with the student schedule of its baseline scripts.
BASELINE_METHODS = ("deepinv2k", "cmi500", "dafl", "zskt", "dfq")


def apply_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """Applies a method name of `METHODS` to a distillation config."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)}.")
    return METHODS[method](config)


def dfkd_runlocal(config: ml_collections.ConfigDict, arch: str) -> ml_collections.ConfigDict:
    """A few seconds' run of the same code path: tiny models, batches and schedule, one device.

    `arch` (a tiny classifier for the dataset's images) is both teacher and student; the teacher
    checkpoint is still given on the command line.
    """
    config.teacher.arch = config.student.arch = arch
    config.mesh.data = 1
    config.epochs, config.warmup = 3, 1
    config.synthesis.batch_size = 16
    config.synthesis.generator.nz, config.synthesis.generator.ngf = 8, 4
    config.pool.capacity = 64
    config.synthesis.cmi.bank_size, config.synthesis.cmi.n_neg = 64, 32
    config.synthesis.cmi.head_dim = 8
    config.kd.steps, config.kd.batch_size = 2, 16
    if config.synthesis.kd_steps_per_round:  # generative methods: two rounds of one KD step
        config.synthesis.kd_steps_per_round = 1
    config.checkpoint.every_epochs = 1
    config.sample_every_epochs = 2
    config.progress_bar = False
    config.mars_head.update(seeds=1, epochs=1, max_terms=5)
    return config


def meta_latent(
    config: ml_collections.ConfigDict, *, reset_every: int, meta_lr_z: float
) -> ml_collections.ConfigDict:
    """FastDFKD with a meta-learned latent (the original's ImageNet synthesizer,
    `synthesis.meta_latent`): z reset every `reset_every` calls, its meta Adam at `meta_lr_z`.
    """
    s = config.synthesis
    s.method = "fast_meta_latent"
    s.meta_latent = ml_collections.ConfigDict(dict(reset_every=reset_every, meta_lr_z=meta_lr_z))
    return config


def smoke_runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run of a few minutes on one CPU device with no data and no teacher: generated test data
    and a randomly initialized teacher (`smoke_test`), tiny batches and schedule. Its models,
    generator and image size are the caller's (tiny ones).
    """
    config.smoke_test = True
    config.teacher.checkpoint = ""
    config.mesh.data = 1
    config.epochs, config.warmup = 2, 1
    config.synthesis.batch_size = 4
    config.synthesis.g_steps = min(config.synthesis.g_steps, 2)
    if config.synthesis.kd_steps_per_round:  # generative methods: two rounds of one KD step
        config.synthesis.kd_steps_per_round = 1
    config.synthesis.generator.nz, config.synthesis.generator.ngf = 8, 4
    config.pool.capacity = 8
    config.kd.steps, config.kd.batch_size = 2, 4
    config.eval_batch_size = 4
    config.checkpoint.every_epochs = 1
    config.sample_every_epochs = 2
    config.progress_bar = False
    return config


# -- the acceleration benchmark -------------------------------------------------------------------

BENCH_METHODS = (
    "deepinv2k",
    "cmi500",
    "dafl",
    "zskt",
    "dfq",
    "fast2",
    "fast5",
    "fast10",
    "fast5_exact",
    "fast5_sequential",
    "fast5_independent",
)


def bench_config(dfkd_config_file: str, dfkd_arg: str = "{method}") -> ml_collections.ConfigDict:
    """The benchmark keys. `dfkd_config_file` is the distillation config file (a path) whose
    `get_config(dfkd_arg.format(method=...))` gives each method's config.
    """
    config = ml_collections.ConfigDict()
    config.job = "benchmark"
    config.dfkd_config = dfkd_config_file
    config.dfkd_arg = dfkd_arg
    # checkpoint '' + train_config (a teacher config file, path[:arg]): train that teacher first
    # into WORKDIR/teacher_run/teacher. train_epochs: that teacher's epochs (0: its config's).
    config.teacher = ml_collections.ConfigDict(dict(checkpoint="", train_config="", train_epochs=0))
    # Applied to every method's distillation config (nested like it; unknown keys are refused).
    config.run = ml_collections.ConfigDict()
    config.methods = BENCH_METHODS
    # Each method runs once per seed (synthesis and student; the teacher is fixed), except the
    # `single_seed_methods` (too slow to repeat), which run with the first seed only.
    config.seeds = (0,)
    config.single_seed_methods = ("deepinv2k", "cmi500")
    # A results folder (in the repository: results/bench_<data>/<backend>) where each finished
    # run's record (summary.json, metrics.jsonl; no checkpoints) is stored per method and seed, and
    # reused instead of running the method again ('' stores nothing).
    config.results_dir = ""
    # Only the runs (each stored as it finishes): no timing pass, cost table or profile.
    config.runs_only = False
    config.timing_repeats = 5  # timed synthesis calls per method (medians reported)
    # Methods too slow to run in full here (DeepInv-2k, CMI-500): their accuracy from a shorter run
    # (short_epochs batches of their own g_steps, or short_steps when > 0, with the same total KD
    # steps and schedule length) and their total synthesis time extrapolated from the measured
    # per-batch time (marked "extrapolated" in every output).
    config.short_methods = ("deepinv2k", "cmi500")
    config.short_epochs = 4
    config.short_steps = 0
    # Methods whose steps run as host-driven chunks (DeepInversion, CMI): a timed call runs this
    # many chunks, scaled to g_steps.
    config.timing_chunks = 2
    # Exact vs first-order meta-gradient cost (time, compiled memory, +-remat) for these g_steps.
    config.cost_g_steps = (2, 5, 10)
    # Skip the runs: per-batch times and extrapolated totals only (no accuracies).
    config.timing_only = False
    config.profile_method = "fast5"  # '' skips the profile
    config.progress_bar = True
    # JAX's persistent compilation cache in WORKDIR/xla_cache: the timing pass then loads the
    # runs' executables instead of compiling them again.
    config.compilation_cache = True
    return config


def bench_runlocal(
    config: ml_collections.ConfigDict,
    methods: tuple[str, ...],
    short_epochs: int,
    short_steps: int,
    cost_g_steps: tuple[int, ...] = (),
) -> None:
    """A benchmark of seconds per method (tests, smoke runs): few methods and timed calls, Fast-2
    profiled, no progress bar, no compilation cache.
    """
    config.methods = methods
    config.short_epochs, config.short_steps = short_epochs, short_steps
    config.timing_repeats = 2
    config.cost_g_steps = cost_g_steps
    config.profile_method = "fast2"
    config.progress_bar = False
    config.compilation_cache = False
