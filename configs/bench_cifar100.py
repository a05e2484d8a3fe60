r"""Acceleration benchmark on CIFAR-100 (for GPUs/TPUs): configs/bench_cifar10.py for CIFAR-100.

  python scripts/bench_acceleration.py --config=configs/bench_cifar100.py \
      --workdir=runs/bench_cifar100 --config.teacher.checkpoint=TEACHER_DIR

Argument: a teacher-student pair (default resnet34-resnet18, the paper's CIFAR-100 row) or
`runlocal` (tiny smoke test). Published (R34 -> R18): DeepInv-2k 61.32, Fast-2 69.76, Fast-5 72.82,
Fast-10 74.34.
"""

from configs import bench_cifar10


def get_config(preset: str = ""):
    return bench_cifar10.cifar_config("cifar100", preset)
