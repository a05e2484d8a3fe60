r"""Acceleration benchmark on CIFAR-10 with the paper's settings (for GPUs/TPUs).

  python scripts/bench_acceleration.py --config=configs/bench_cifar10.py \
      --workdir=runs/bench_cifar10 --config.teacher.checkpoint=TEACHER_DIR

The argument is `PAIR` (a teacher-student pair of configs/dfkd_cifar.py, default
resnet34-resnet18) or `runlocal` (tiny models and steps, a smoke test for CPUs and mock data).
Full preset: 220 epochs x 400 KD steps per method, scans instead of unrolled steps (accelerators
compile a scan once), DeepInv-2k's accuracy from 22 batches (a tenth) of 2000 steps with the same
total KD steps and its total synthesis time extrapolated; `--config.deepinv_full=True` runs it
in full (the paper: 42 GPU-hours). What it takes: docs/benchmarks.md.
"""

from configs import bench_common


def cifar_config(dataset: str, preset: str):
    """The CIFAR benchmark for `dataset` ('cifar10' | 'cifar100'); `preset` as above."""
    pair = "resnet34-resnet18" if preset in ("", "runlocal") else preset
    config = bench_common.bench_config("configs.dfkd_cifar", f"{dataset}-{{method}}-{pair}")
    run = config.run
    teacher, student = pair.split("-")
    run.teacher = dict(arch=teacher)
    run.student = dict(arch=student)
    run.epochs = 220
    run.warmup = 20
    run.kd = dict(steps=400)
    # Accelerators: one compiled scan for any step count (XLA:CPU prefers unrolled chunks).
    run.synthesis = dict(unroll=False, chunk_steps=0)
    config.deepinv_epochs = 22
    config.deepinv_timing_chunks = 1
    config.timing_repeats = 5
    if preset == "runlocal":
        run.teacher.arch = run.student.arch = "resnet8"
        run.epochs, run.warmup = 2, 1
        run.kd = dict(steps=2, batch_size=16)
        run.synthesis = dict(unroll=True, chunk_steps=2, batch_size=16, generator=dict(nz=8, ngf=4))
        run.pool = dict(capacity=64)
        run.mesh = dict(data=1)
        run.eval_batch_size = 16
        run.sample_every_epochs = 0
        config.methods = ("deepinv2k", "fast2")
        config.deepinv_epochs, config.deepinv_steps = 1, 2
        config.timing_repeats = 2
        config.cost_g_steps = ()
        config.profile_method = "fast2"
        config.progress_bar = False
        config.compilation_cache = False
    return config


def get_config(preset: str = ""):
    return cifar_config("cifar10", preset)
