"""Config blocks shared by the files in `configs/`: every job's keys, the teacher and the
distillation jobs' blocks, their `runlocal` variants.

The config argument and loading by path: `fastdfkd_jax.config_args`; the named methods' presets:
`fastdfkd_jax.methods`; the benchmark's keys: `fastdfkd_jax.benchmark.configs`.

Batch sizes in every config (`train.batch_size`, `synthesis.batch_size`, `kd.batch_size`,
`eval_batch_size`) are GLOBAL: summed over all devices of all processes. Each device computes
`batch_size / mesh.data` rows (`mesh.data = -1`: every device), which must divide evenly. Learning
rates are for that global batch; an optimizer block's `lr_scaling` ('none' | 'linear' against
`reference_batch_size`) says whether they change when the global batch does (docs/scaling.md).
"""

from typing import Any

import ml_collections

from fastdfkd_jax import backend, optim, precision, sharding, synthesis

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
    # (TF32 matmuls on GPUs; on CPUs 'highest' up to rounding) | 'bfloat16' (mixed precision).
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
    # arch: a zoo name or an import path 'package.module:ClassName'; kwargs: the constructor's
    # keyword arguments as a dict literal, e.g. "{'width': 32}" (models.parse_kwargs).
    config.model = ml_collections.ConfigDict(dict(arch=arch, kwargs=""))
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
    # A workdir that holds a run of another config, teacher or code version: refused (False), or
    # that run's files moved to WORKDIR/superseded.<n>/ and this run started there (True).
    config.start_afresh = False
    # arch: a zoo name or an import path 'package.module:ClassName'; kwargs: the constructor's
    # keyword arguments as a dict literal, e.g. "{'width': 32}" (models.parse_kwargs).
    config.teacher = ml_collections.ConfigDict(dict(arch=teacher_arch, kwargs="", checkpoint=""))
    config.student = ml_collections.ConfigDict(dict(arch=student_arch, kwargs=""))
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
    # The inversion loss's weights, read by every method that has the term.
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
    s.generator = ml_collections.ConfigDict(dict(arch="generator", nz=256, ngf=64))
    # kind 'crop' (pad and crop), 'jitter' (DeepInversion's roll) or 'resized_crop' (area
    # fraction in `scale`, the original's ImageNet synthesis: (0.75, 1)); flip with each.
    # flip_whole_batch (kind 'jitter'): one coin flip for the whole batch, as the original
    # DeepInversion; False flips each image independently.
    s.augment = ml_collections.ConfigDict(
        dict(kind="crop", padding=4, flip=True, jitter=4, scale=(0.75, 1.0), flip_whole_batch=False)
    )
    # Each method's own keys, in its own block with its defaults (declared by the method's module,
    # fastdfkd_jax.synthesis.BLOCKS): synthesis.fast, .meta_latent, .deepinversion, .cmi,
    # .generative. A run reads only its method's (synthesis.SYNTHESIZERS[method].blocks).
    s.update(synthesis.config_blocks())

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


def dfkd_runlocal(config: ml_collections.ConfigDict, arch: str) -> ml_collections.ConfigDict:
    """A few seconds' run of the same code path: tiny models, batches and schedule, one device.

    `arch` (a tiny classifier for the dataset's images) is both teacher and student; the teacher
    checkpoint is still given on the command line.
    """
    config.teacher.arch = config.student.arch = arch
    config.mesh.data = 1
    config.epochs, config.warmup = 3, 1
    # 16, or the method's multiple above it (NAYER: a group of one image per class).
    config.synthesis.batch_size = round_up(RUNLOCAL_BATCH, synthesis.batch_multiple(config))
    # NAYER: a few steps, two warmup calls.
    config.synthesis.nayer.g_steps, config.synthesis.nayer.warmup_calls = 4, 2
    config.synthesis.generator.nz, config.synthesis.generator.ngf = 8, 4
    config.pool.capacity = 64
    config.synthesis.cmi.bank_size, config.synthesis.cmi.n_neg = 64, 32
    config.synthesis.cmi.head_dim = 8
    config.kd.steps, config.kd.batch_size = 2, 16
    # Generative methods: two rounds of one KD step.
    config.synthesis.generative.kd_steps_per_round = 1
    config.checkpoint.every_epochs = 1
    config.sample_every_epochs = 2
    config.progress_bar = False
    config.mars_head.update(seeds=1, epochs=1, max_terms=5)
    return config


# The runlocal variants' synthesis batch (rounded up to what the method needs).
RUNLOCAL_BATCH = 16


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def meta_latent(
    config: ml_collections.ConfigDict, *, reset_every: int, meta_lr_z: float
) -> ml_collections.ConfigDict:
    """FastDFKD with a meta-learned latent (the original's ImageNet synthesizer,
    `synthesis.meta_latent`): z reset every `reset_every` calls, its meta Adam at `meta_lr_z`.
    """
    s = config.synthesis
    s.method = "fast_meta_latent"
    s.meta_latent.update(dict(reset_every=reset_every, meta_lr_z=meta_lr_z))
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
    synthesis.set_inner_steps(config.synthesis, min(synthesis.inner_steps(config.synthesis), 2))
    # Generative methods: two rounds of one KD step.
    config.synthesis.generative.kd_steps_per_round = 1
    config.synthesis.generator.nz, config.synthesis.generator.ngf = 8, 4
    config.pool.capacity = 8
    config.kd.steps, config.kd.batch_size = 2, 4
    config.eval_batch_size = 4
    config.checkpoint.every_epochs = 1
    config.sample_every_epochs = 2
    config.progress_bar = False
    return config


def baseline_cifar_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The student schedule of the original's deepinv/cmi/dafl/zskt/dfq_cifar.sh: 200 epochs, no
    warmup, SGD at 0.1 (FastDFKD's fast_cifar.sh: 220 epochs, warmup 20, 0.2).
    """
    config.epochs, config.warmup = 200, 0
    config.kd.optimizer.learning_rate = 0.1
    config.pool.capacity = config.synthesis.batch_size * config.epochs
    return config
