"""The data-free distillation config: every key, with the original's CIFAR hyperparameters.

Variants (`configs/dfkd_<dataset>_<method>.py`) start from `dfkd_config(...)` and apply one of the
method functions below, then change only what differs for their dataset.
"""

import ml_collections

from configs import common


def dfkd_config(dataset: str, teacher_arch: str, student_arch: str) -> ml_collections.ConfigDict:
    """FastDFKD defaults of scripts/fast_cifar.sh (Fast-5 on CIFAR), for `dataset`."""
    config = common.base_config("dfkd")
    config.method = "fast5"
    config.dataset = common.dataset(dataset)
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
    s.method = "fast"  # 'fast' | 'deepinversion'
    s.batch_size = 256  # global: per device 256 / mesh.data
    s.g_steps = 5
    s.lr_g = 3e-3
    s.lr_z = 0.01
    s.meta_lr = 1.5e-2  # lr_g * g_steps in the original
    s.lr_x = 0.1  # DeepInversion's pixel learning rate
    s.inner_betas = (0.5, 0.999)
    s.meta_betas = (0.5, 0.999)
    s.inner_eps_root = 1e-8
    s.meta_gradient = "first_order"  # 'exact' | 'first_order' | 'reptile'
    s.reptile_factor = 67.0  # the original's hard-coded Reptile scale
    s.meta = True  # False: the non-meta ablation (generator re-initialized every call)
    s.remat = False  # jax.checkpoint the inner steps of the exact meta-gradient
    # Unroll the inner steps at trace time: ~8x faster than lax.scan on XLA:CPU
    # (synthesis/steps.py); set False on accelerators to compile once for any g_steps.
    s.unroll = True
    # DeepInversion only: run its steps as host-driven, unrolled chunks of this many steps (0: one
    # compiled lax.scan over all steps, the better choice on accelerators).
    s.chunk_steps = 0
    s.bn = 10.0
    s.oh = 0.4
    s.adv = 1.1
    s.bn_momentum = 0.9
    s.adversarial = "kl"  # 'kl' (FastDFKD) | 'js' (DeepInversion)
    s.js_temperature = 3.0
    s.generator = ml_collections.ConfigDict(dict(arch="generator", nz=256, ngf=64))
    s.augment = ml_collections.ConfigDict(dict(kind="crop", padding=4, flip=True, jitter=4))
    s.reset_l0_epoch = 140  # 120 + warmup in the original; -1: never
    s.reset_layers = ("l1", "bn0")
    s.reset_std = 0.02

    config.pool = ml_collections.ConfigDict(dict(capacity=256 * 220, dtype="uint8"))

    kd = config.kd = ml_collections.ConfigDict()
    kd.steps = 400
    kd.batch_size = 256  # global: per device 256 / mesh.data; kd.optimizer's rates are for it
    kd.temperature = 20.0
    kd.optimizer = common.optimizer(
        name="sgd",
        learning_rate=0.2,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="cosine",
        end_learning_rate=2e-4,
    )
    kd.augment = ml_collections.ConfigDict(dict(padding=4, flip=True))
    return config


def fast(config: ml_collections.ConfigDict, g_steps: int) -> ml_collections.ConfigDict:
    """Fast-2/5/10 with the original's per-variant learning rates (meta lr = lr_g * g_steps)."""
    lr_z, lr_g = {2: (0.015, 5e-3), 5: (0.01, 3e-3), 10: (0.01, 2e-3)}[g_steps]
    s = config.synthesis
    s.method, s.g_steps, s.lr_z, s.lr_g, s.meta_lr = "fast", g_steps, lr_z, lr_g, lr_g * g_steps
    config.method = f"fast{g_steps}"
    return config


def nometa(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The non-meta ablation of the current Fast-k config."""
    config.synthesis.meta = False
    config.method = f"{config.method}_nometa"
    return config


def deepinv(config: ml_collections.ConfigDict, steps: int = 2000) -> ml_collections.ConfigDict:
    """DeepInv-2k: pixels optimized from noise, Adam(0.1, betas 0.5/0.99), jitter + flip."""
    s = config.synthesis
    s.method, s.g_steps, s.lr_x, s.inner_betas = "deepinversion", steps, 0.1, (0.5, 0.99)
    s.bn, s.oh, s.adv, s.adversarial, s.bn_momentum = 10.0, 1.0, 1.0, "js", 0.0
    s.augment.kind = "jitter"
    s.chunk_steps = 10
    s.reset_l0_epoch = -1
    config.method = f"deepinv{steps // 1000}k" if steps % 1000 == 0 else f"deepinv{steps}"
    return config


def exact(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The exact (second-order) meta-gradient instead of the original's first-order sum."""
    config.synthesis.meta_gradient = "exact"
    config.method = f"{config.method}_exact"
    return config


def apply_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """Applies a method name: fast2 | fast5 | fast10 | fast5_exact | fast5_nometa | deepinv2k."""
    methods = {
        "fast2": lambda c: fast(c, 2),
        "fast5": lambda c: fast(c, 5),
        "fast10": lambda c: fast(c, 10),
        "fast5_exact": lambda c: exact(fast(c, 5)),
        "fast5_nometa": lambda c: nometa(fast(c, 5)),
        "deepinv2k": lambda c: deepinv(c, 2000),
    }
    if method not in methods:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(methods)}.")
    return methods[method](config)
