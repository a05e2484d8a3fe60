r"""CIFAR teachers of the paper (for accelerators): `dataset-arch` as the config argument.

  python -m fastdfkd_jax.main --config=configs/teacher_cifar.py:cifar10-resnet34 \
      --workdir=runs/teacher_cifar10_resnet34

Arguments: cifar10 | cifar100, and resnet34 | vgg11_bn | wrn40_2 (any zoo classifier works).
The original's teachers reach 95.70 (ResNet-34), 92.25 (VGG-11), 94.87 (WRN-40-2) on CIFAR-10:
SGD 0.1, momentum 0.9, weight decay 5e-4, cosine, 200 epochs, batch 128, crop 4 + flip.
"""

import ml_collections

from configs import common


def get_config(arg: str = "cifar10-resnet34") -> ml_collections.ConfigDict:
    dataset, arch = arg.split("-")
    config = common.base_config("teacher")
    config.dataset = common.dataset(dataset)
    config.model = ml_collections.ConfigDict(dict(arch=arch))
    config.train = ml_collections.ConfigDict()
    config.train.epochs = 200
    config.train.batch_size = 128
    config.train.optimizer = common.optimizer(
        name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine"
    )
    config.train.augment = ml_collections.ConfigDict(dict(padding=4, flip=True))
    config.checkpoint.every_epochs = 5
    return config
