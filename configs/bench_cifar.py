r"""Acceleration benchmark on CIFAR-10/100 with the paper's settings (for GPUs/TPUs).

  python -m fastdfkd_jax.main --config=configs/bench_cifar.py:cifar10 \
      --workdir=runs/bench_cifar10 --config.teacher.checkpoint=TEACHER_DIR

The argument: `dataset` cifar10 (default) | cifar100, the teacher-student `pair` of
configs/dfkd_cifar.py (default resnet34-resnet18), e.g. `:cifar100,wrn40_2-wrn16_1`, and the flag
`runlocal` (ResNet-8 models, tiny steps: a smoke test for CPUs and TFDS mock data).
Full variant: 220 epochs x 400 KD steps per method, the backend choosing scans or unrolled steps
(accelerators compile a scan once: fastdfkd_jax/backend.py), DeepInv-2k's accuracy from 22
batches (a tenth) of 2000 steps with the same total KD steps and its total synthesis time
extrapolated; `--config.deepinv_full=True` runs it in full (the paper: 42 GPU-hours). Not
measured here. Published (CIFAR-100, R34 -> R18): DeepInv-2k 61.32, Fast-2 69.76, Fast-5 72.82,
Fast-10 74.34. What it takes: docs/benchmarks.md.
"""

import ml_collections

from fastdfkd_jax import config_blocks as blocks


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = blocks.parse_arg(
        arg,
        dataset="cifar10",
        pair="resnet34-resnet18",
        runlocal=False,
        choices={"dataset": ("cifar10", "cifar100"), "pair": tuple(blocks.CIFAR_PAIRS)},
    )
    config = blocks.bench_config(
        blocks.sibling(__file__, "dfkd_cifar.py"), f"{a.dataset},{{method}},{a.pair}"
    )
    run = config.run
    teacher, student = a.pair.split("-")
    run.teacher = dict(arch=teacher)
    run.student = dict(arch=student)
    run.epochs = 220
    run.warmup = 20
    run.kd = dict(steps=400)
    # synthesis.unroll and chunk_steps stay 'auto': one compiled scan for any step count on
    # accelerators, unrolled (chunks) on CPU (fastdfkd_jax/backend.py).
    config.deepinv_epochs = 22
    config.deepinv_timing_chunks = 1
    config.timing_repeats = 5
    if a.runlocal:
        run.teacher.arch = run.student.arch = "resnet8"
        run.epochs, run.warmup = 2, 1
        run.kd = dict(steps=2, batch_size=16)
        run.synthesis = dict(
            unroll="true", chunk_steps="2", batch_size=16, generator=dict(nz=8, ngf=4)
        )
        run.pool = dict(capacity=64)
        run.mesh = dict(data=1)
        run.eval_batch_size = 16
        run.sample_every_epochs = 0
        blocks.bench_runlocal(config, ("deepinv2k", "fast2"), deepinv_epochs=1, deepinv_steps=2)
    return config
