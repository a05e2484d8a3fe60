r"""fast5 on cifar10 (accelerators): `configs/dfkd_cifar.py` with dataset and method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_cifar10_fast5.py:wrn40_2-wrn16_1 \
      --workdir=runs/cifar10_fast5 --config.teacher.checkpoint=TEACHER_DIR

The argument is the teacher-student pair (default resnet34-resnet18); see configs/dfkd_cifar.py.
"""

from configs import dfkd_cifar


def get_config(pair: str = "resnet34-resnet18"):
    return dfkd_cifar.build("cifar10", "fast5", *pair.split("-"))
