r"""Teacher on Fashion-MNIST (28x28x1, 10 classes), prepared offline from Debian's files.

  python -m fastdfkd_jax.main --config=configs/teacher_fashion_mnist.py \
      --workdir=runs/teacher_fashion_mnist

Measured (docs/results.md): 91.60% test accuracy in 14.3 minutes alone on 2 CPU cores. The flag
`runlocal` trains fmnist_cnn_tiny for one epoch on one device.
"""

import ml_collections

from fastdfkd_jax import config_args
from fastdfkd_jax import config_blocks as blocks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(arg, runlocal=False)
    config = blocks.teacher_config(
        "fashion_mnist",
        "fmnist_cnn_teacher",
        epochs=6,
        batch_size=128,
        opt=blocks.optimizer(
            name="sgd",
            learning_rate=0.05,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="cosine",
        ),
        padding=2,
        flip=True,
    )
    config.eval_batch_size = 1000
    if a.runlocal:
        blocks.teacher_runlocal(config, "fmnist_cnn_tiny", epochs=1)
    return config
