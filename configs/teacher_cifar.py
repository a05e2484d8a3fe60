r"""CIFAR teachers of the paper (for accelerators): dataset and architecture as the argument.

  python -m fastdfkd_jax.main --config=configs/teacher_cifar.py:cifar10,resnet34 \
      --workdir=runs/teacher_cifar10_resnet34

Argument: `dataset` cifar10 (default) | cifar100 and `arch` (default resnet34; resnet34, vgg11_bn,
wrn40_2 are the paper's; any zoo classifier is accepted), e.g. `:cifar100,wrn40_2`;
`runlocal`: ResNet-8 for one epoch on one device. Not measured here; the original's teachers reach
95.70 (ResNet-34), 92.25 (VGG-11), 94.87 (WRN-40-2) on CIFAR-10: SGD 0.1, momentum 0.9, weight
decay 5e-4, cosine, 200 epochs, batch 128, crop 4 + flip.
"""

import ml_collections

from fastdfkd_jax import config_args, models
from fastdfkd_jax import config_blocks as blocks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(
        arg,
        dataset="cifar10",
        arch="resnet34",
        runlocal=False,
        choices={"dataset": ("cifar10", "cifar100"), "arch": tuple(models.CLASSIFIERS)},
    )
    config = blocks.teacher_config(
        a.dataset,
        a.arch,
        epochs=200,
        batch_size=128,
        opt=blocks.optimizer(
            name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine"
        ),
        padding=4,
        flip=True,
    )
    config.checkpoint.every_epochs = 5
    if a.runlocal:
        blocks.teacher_runlocal(config, "resnet8", epochs=1)
    return config
