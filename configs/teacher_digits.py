r"""Teacher on scikit-learn digits (8x8x1, 10 classes): the embedded default.

  python -m fastdfkd_jax.main --config=configs/teacher_digits.py --workdir=runs/teacher_digits

Stored (`results/teachers/digits`, the benchmark's teacher): 99.72% test accuracy in 12.3 s of
training on 2 CPU cores. The flag `runlocal`
(`:runlocal`) trains the 1.4k-parameter digits_cnn_tiny for 2 epochs on one device (the tests).
"""

import ml_collections

from fastdfkd_jax import config_args
from fastdfkd_jax import config_blocks as blocks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(arg, runlocal=False)
    config = blocks.teacher_config(
        "digits",
        "digits_cnn_teacher",
        epochs=40,
        batch_size=64,
        opt=blocks.optimizer(name="adam", learning_rate=3e-3, schedule="cosine", weight_decay=0.0),
        # Digits are not mirror-symmetric: shifts only.
        padding=1,
        flip=False,
    )
    config.checkpoint.every_epochs = 10
    if a.runlocal:
        blocks.teacher_runlocal(config, "digits_cnn_tiny", epochs=2)
        config.checkpoint.every_epochs = 1
    return config
