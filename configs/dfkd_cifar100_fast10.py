r"""fast10 on cifar100 (accelerators): `configs/dfkd_cifar.py` with dataset and method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_cifar100_fast10.py:wrn40_2-wrn16_1 \
      --workdir=runs/cifar100_fast10 --config.teacher.checkpoint=TEACHER_DIR

The argument is the teacher-student pair (default resnet34-resnet18); see configs/dfkd_cifar.py.
"""

from configs import dfkd_cifar


def get_config(pair: str = "resnet34-resnet18"):
    return dfkd_cifar.build("cifar100", "fast10", *pair.split("-"))
