r"""Teacher on Fashion-MNIST (28x28x1, 10 classes), prepared offline from Debian's files.

  python -m fastdfkd_jax.main --config=configs/teacher_fashion_mnist.py \
      --workdir=runs/teacher_fashion_mnist

Target: >= 91% test accuracy within 20 minutes on 2 CPU cores (measured in docs/results.md).
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.base_config("teacher")
    config.dataset = common.dataset("fashion_mnist")
    config.model = ml_collections.ConfigDict(dict(arch="fmnist_cnn_teacher"))
    config.train = ml_collections.ConfigDict()
    config.train.epochs = 6
    config.train.batch_size = 128
    config.train.optimizer = common.optimizer(
        name="sgd",
        learning_rate=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
    )
    config.train.augment = ml_collections.ConfigDict(dict(padding=2, flip=True))
    config.eval_batch_size = 1000
    return config
