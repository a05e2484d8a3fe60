r"""Data-free distillation on CIFAR-10/100 with the original's hyperparameters (for accelerators).

One file serves every cell of the paper's tables; the argument is `dataset-method-teacher-student`:

  python -m fastdfkd_jax.main --config=configs/dfkd_cifar.py:cifar10-fast5-wrn40_2-wrn16_1 \
      --workdir=runs/cifar10_fast5_w402_w161 --config.teacher.checkpoint=TEACHER_DIR

methods: fast2, fast5, fast10 (first-order meta-gradient as the original), fast5_exact,
fast5_nometa, deepinv2k. Pairs (adv, oh from scripts/fast_cifar.sh): resnet34-resnet18 (1.33, 0.5),
vgg11_bn-resnet18 (1.0, 0.5), wrn40_2-wrn16_1 / wrn40_2-wrn40_1 / wrn40_2-wrn16_2 (1.1, 0.4).
Published (CIFAR-10, Fast-5): 93.63 / 89.94 / 88.90 / 92.04 / 91.96. The thin wrappers
`configs/dfkd_cifar10_<method>.py` and `configs/dfkd_cifar100_<method>.py` fix dataset and method.
"""

import ml_collections

from configs import dfkd_common

# (adv, oh) per teacher/student pair of the paper's tables.
PAIRS = {
    ("resnet34", "resnet18"): (1.33, 0.5),
    ("vgg11_bn", "resnet18"): (1.0, 0.5),
    ("wrn40_2", "wrn16_1"): (1.1, 0.4),
    ("wrn40_2", "wrn40_1"): (1.1, 0.4),
    ("wrn40_2", "wrn16_2"): (1.1, 0.4),
}


def build(dataset: str, method: str, teacher: str, student: str) -> ml_collections.ConfigDict:
    if (teacher, student) not in PAIRS:
        raise ValueError(
            f"Unknown pair {teacher}-{student}; the paper's pairs are {sorted(PAIRS)}."
        )
    config = dfkd_common.dfkd_config(dataset, teacher, student)
    config.synthesis.adv, config.synthesis.oh = PAIRS[(teacher, student)]
    return dfkd_common.apply_method(config, method)


def get_config(arg: str = "cifar10-fast5-resnet34-resnet18") -> ml_collections.ConfigDict:
    dataset, method, teacher, student = arg.split("-")
    return build(dataset, method, teacher, student)
