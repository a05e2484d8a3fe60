r"""Data-free distillation on CIFAR-10/100 with the original's hyperparameters (for accelerators).

One file serves every cell of the paper's tables; the argument names dataset, method and pair:

  python -m fastdfkd_jax.main --config=configs/dfkd_cifar.py:cifar10,fast5,wrn40_2-wrn16_1 \
      --workdir=runs/cifar10_fast5_w402_w161 --config.teacher.checkpoint=TEACHER_DIR

(or `:dataset=cifar10,method=fast5,pair=wrn40_2-wrn16_1`). dataset: cifar10 (default) | cifar100.
method: a named method, default fast5 (`fastdfkd --list_methods`). pair (adv, oh from the
original's scripts/fast_cifar.sh):
resnet34-resnet18 (default; 1.33, 0.5), vgg11_bn-resnet18 (1.0, 0.5), wrn40_2-wrn16_1 /
wrn40_2-wrn40_1 / wrn40_2-wrn16_2 (1.1, 0.4). `runlocal`: ResNet-8 teacher and student, tiny
batches and schedule, one device (a CPU smoke run; works on TFDS mock data).
Published (CIFAR-10, Fast-5), not measured here: 93.63 / 89.94 / 88.90 / 92.04 / 91.96.
"""

import ml_collections

from fastdfkd_jax import config_args, methods
from fastdfkd_jax import config_blocks as blocks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = config_args.parse_arg(
        arg,
        dataset="cifar10",
        method="fast5",
        pair="resnet34-resnet18",
        runlocal=False,
        choices={
            "dataset": ("cifar10", "cifar100"),
            "method": tuple(methods.METHODS),
            "pair": tuple(blocks.CIFAR_PAIRS),
        },
    )
    teacher, student = a.pair.split("-")
    config = blocks.dfkd_config(a.dataset, teacher, student)
    config.synthesis.adv, config.synthesis.oh = blocks.CIFAR_PAIRS[a.pair]
    methods.apply_method(config, a.method)
    if a.method in methods.BASELINE_METHODS:  # the student schedule of their original scripts
        blocks.baseline_cifar_protocol(config)
    elif methods.REGISTRY[a.method].cifar_protocol:  # its own original scripts' (NAYER)
        methods.REGISTRY[a.method].cifar_protocol(config)
    if a.runlocal:
        blocks.dfkd_runlocal(config, "resnet8")
        config.eval_batch_size = 16
        config.sample_every_epochs = 0
    return config
