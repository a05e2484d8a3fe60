r"""Data-free distillation on ImageNet (224x224, 1000 classes): the original's Fast-50.

Teacher: torchvision's ResNet-50, imported once (docs/imagenet_nyuv2.md):

  python scripts/import_torch_teacher.py --arch=resnet50_imagenet --num_classes=1000 \
      --dataset=imagenet2012 --pth=resnet50-0676ba61.pth --out=teachers/imagenet_resnet50

One GPU (the published setting, global batch 100):

  python -m fastdfkd_jax.main --config=configs/dfkd_imagenet.py:resnet50-resnet18 \
      --workdir=runs/imagenet_fast50_r50_r18 --config.teacher.checkpoint=teachers/imagenet_resnet50

A TPU v4-32 pod slice (16 chips on 4 hosts; the same command on every worker, paths on a shared
file system, docs/scaling.md). Batches are global and must divide by the device count: `batch=96`
keeps the published per-step batch (6 per chip); `batch=1600` (100 per chip) synthesizes and
distills 16x more per step, with the student's learning rate scaled linearly (reference 100):

  python -m fastdfkd_jax.main --config=configs/dfkd_imagenet.py:resnet50-resnet18,batch=96 \
      --workdir=/mnt/shared/runs/imagenet_fast50 \
      --config.teacher.checkpoint=/mnt/shared/teachers/imagenet_resnet50 \
      --config.distributed.enabled=True

(8 GPUs on one host: `batch=96` or `batch=800`, no `distributed`.) Evaluation reads the validation
set streamed from TFDS's prepared `imagenet2012` (`scripts/prepare_data.py --dataset=imagenet2012`)
or, with `--config.dataset.name=imagenet2012_folder`, from the train/val folder layout.

The argument (comma-separated, `key=value` or bare words):
  pair    resnet50-resnet18 (default) | resnet50-resnet50 | resnet50-mobilenetv2
  method  fast50 (default: the published Fast-50) | deepinv2k (DeepInversion, 2000 steps per batch)
  batch   global synthesis and KD batch (default 100, the published one)
  runlocal  a few minutes on one CPU with no data and no teacher: a random tiny teacher (resnet8),
            32x32 images, generated test data (`smoke_test`); checks the run path, nothing else.

Fast-50 as the original's `datafree_kd_imagenet.py` and its published logs (`logs/*FastDFKD_50*`):
the deep generator (a 14x14 spatial latent upsampled four times), 50 inner steps per call (Adam
lr_g 2e-4, lr_z 0.01, betas 0.5/0.999), a meta-learned latent reset every 50 calls, Reptile
meta-updates (factor 1; meta Adam lr 1e-4 for the generator, 5e-3 for z), loss 0.1 BN (momentum
0.9) + 0.1 one-hot + adv (0.1; 1.0 for ResNet-18), synthesis augmentation RandomResizedCrop(224,
scale 0.75-1) + flip; KD on the pool with the ImageNet train transform (RandomResizedCrop(224),
scale 0.08-1, + flip), KL at T = 5, SGD 0.1 (momentum 0.9, weight decay 1e-4, cosine to 0).
The original's epoch is 10 rounds of (one synthesis call, 100 KD steps); here an epoch is one
round, so its 400 epochs are 4000 here (the student is evaluated every 10, as the original does
once per its epoch). Differences: the pool keeps the newest 140,000 images (the paper's "data
amount"; the original keeps all 400,000) and starts empty (the published runs started from a
folder of earlier synthetic images, `cmi_init`, not released); the pool gets each call's
lowest-loss iterate (the original's script, its last).

Published (top-1 %, paper Table and README; not measured here): ResNet-50 teacher 75.45 (trained
on ImageNet); Fast-50: ResNet-50 -> ResNet-50 68.61, -> ResNet-18 53.45, -> MobileNetV2 43.02, at
6.28 h of synthesis (47.8x faster than Generative DFD's ~300 h); DeepInv-2k ResNet-50 -> ResNet-50
68.00 (166 h).
"""

import ml_collections

from fastdfkd_jax import config_args, methods
from fastdfkd_jax import config_blocks as blocks

# teacher-student pair -> (teacher, student, adv) of the published Fast-50 logs.
PAIRS = {
    "resnet50-resnet18": ("resnet50_imagenet", "resnet18_imagenet", 1.0),
    "resnet50-resnet50": ("resnet50_imagenet", "resnet50_imagenet", 0.1),
    "resnet50-mobilenetv2": ("resnet50_imagenet", "mobilenetv2_imagenet", 0.1),
}
METHODS = ("fast50", "deepinv2k")
PUBLISHED_BATCH = 100
# The original's epoch: 10 rounds (ep_steps 1000 / kd_steps 100); 400 of them.
ROUNDS_PER_ORIGINAL_EPOCH = 10
ORIGINAL_EPOCHS = 400
# The paper's synthetic data amount (DeepInversion's 140k images).
POOL_IMAGES = 140_000
# RandomResizedCrop area fractions: the original's synthesis augmentation, torchvision's default.
SYNTHESIS_SCALE = (0.75, 1.0)
KD_SCALE = (0.08, 1.0)
# DeepInversion's roll jitter: an eighth of the image side.
JITTER_FRACTION = 8


def fast50(config: ml_collections.ConfigDict) -> None:
    f = config.synthesis.fast
    f.g_steps, f.lr_g, f.lr_z, f.meta_lr = 50, 2e-4, 0.01, 1e-4
    f.meta_gradient, f.reptile_factor = "reptile", 1.0
    blocks.meta_latent(config, reset_every=50, meta_lr_z=5e-3)
    config.method = "fast50"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(
        arg,
        pair="resnet50-resnet18",
        method="fast50",
        batch=PUBLISHED_BATCH,
        runlocal=False,
        choices={"pair": tuple(PAIRS), "method": METHODS},
    )
    teacher, student, adv = PAIRS[a.pair]
    config = blocks.dfkd_config("imagenet2012", teacher, student)
    config.epochs = ORIGINAL_EPOCHS * ROUNDS_PER_ORIGINAL_EPOCH
    config.warmup = 0  # the original's start_kd 0: KD and the adversarial term from the start
    config.eval_every_epochs = ROUNDS_PER_ORIGINAL_EPOCH
    config.eval_batch_size = 512  # divides 8, 16, 32 and 64 devices
    config.sample_every_epochs = 100
    config.checkpoint.every_epochs = ROUNDS_PER_ORIGINAL_EPOCH

    s = config.synthesis
    s.batch_size = a.batch
    s.bn, s.oh, s.adv, s.bn_momentum = 0.1, 0.1, adv, 0.9
    s.generator = ml_collections.ConfigDict(dict(arch="generator_imagenet", nz=256, ngf=64))
    s.augment.kind, s.augment.scale, s.augment.flip = "resized_crop", SYNTHESIS_SCALE, True
    s.augment.jitter = 224 // JITTER_FRACTION
    s.fast.reset_l0_epoch = -1  # reset_l0 0 in the published runs
    # synthesis.fast.unroll stays 'auto': one lax.scan on accelerators, unrolled steps on CPU.

    config.pool.capacity = POOL_IMAGES
    kd = config.kd
    kd.steps, kd.batch_size, kd.temperature = 100, a.batch, 5.0
    kd.optimizer.learning_rate, kd.optimizer.end_learning_rate = 0.1, 0.0
    kd.optimizer.lr_scaling, kd.optimizer.reference_batch_size = "linear", PUBLISHED_BATCH
    kd.augment.kind, kd.augment.scale, kd.augment.flip = "resized_crop", KD_SCALE, True

    if a.method == "fast50":
        fast50(config)
    else:
        methods.apply_method(config, a.method)
        s.augment.jitter = 224 // JITTER_FRACTION

    if a.runlocal:
        config.teacher.arch = config.student.arch = "resnet8"
        config.dataset.image_size = 32
        blocks.smoke_runlocal(config)
        s.augment.jitter = 32 // JITTER_FRACTION
        config.eval_every_epochs = 1
        config.kd.optimizer.reference_batch_size = config.kd.batch_size
        if a.method == "fast50":
            config.synthesis.meta_latent.reset_every = 2  # a reset within the run
    return config
