r"""Compiled step time of every training step on 1, 2, 4, 8 (simulated) devices.

  python scripts/bench_scaling.py --devices=1,2,4,8 --repeats=10

For each device count a fresh Python process (XLA reads the forced device count once, before JAX
starts) builds the mesh over that many devices and compiles, with the shardings the jobs use, the
teacher step (`configs/teacher_digits.py`), the student KD step and the Fast-5 synthesis call
(`configs/dfkd_digits_fast5.py`; models randomly initialized: speed does not depend on weights). It
reports the compile time, the median (and min/max) of `--repeats` timed calls, each ended by
`block_until_ready()`, after one untimed warm-up call, and XLA's per-device FLOP count. Global
batches are the configs'; per-device batches shrink as devices grow.

On a CPU host the "devices" are threads sharing its cores: the table then measures the overhead of
partitioning (collectives, smaller kernels), not a speed-up. On an accelerator host, pass
`--devices=1,2,4,8 --nosimulate` to use real devices.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags, logging

# `configs` is a top-level package of the repository, next to this scripts/ folder.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per step (the median is reported).")
_SIMULATE = flags.DEFINE_bool(
    "simulate", True, "Force N CPU devices with XLA_FLAGS (False: use N real devices)."
)
_OUT = flags.DEFINE_string("out", "", "Also write the JSON results here.")
_WORKER = flags.DEFINE_integer("worker", 0, "Internal: measure on this many devices and exit.")

STEPS = ("teacher_step", "kd_step", "synthesis_fast5")


def _time_calls(call, repeats: int) -> dict:
    import jax

    jax.block_until_ready(call())  # warm-up: first-call allocations and transfers
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        seconds.append(time.perf_counter() - start)
    return dict(
        median_s=statistics.median(seconds), min_s=min(seconds), max_s=max(seconds), n=repeats
    )


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


def measure(num_devices: int, repeats: int) -> dict:
    """Compiles and times the three steps on a mesh of `num_devices`; returns a JSON-able dict."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from configs import dfkd_digits_fast5, teacher_digits
    from fastdfkd_jax import data, loop, models, optim, sharding, teacher
    from fastdfkd_jax.synthesis import pool as pool_lib
    from fastdfkd_jax.synthesis.objective import init_bn_memory

    mesh = sharding.make_mesh(sharding.mesh_config(data=num_devices))
    results = dict(devices=num_devices, platform=jax.devices()[0].platform, steps={})

    # Teacher training step.
    tcfg = teacher_digits.get_config()
    info = data.get_info(tcfg.dataset.name)
    model = models.create_model(tcfg.model.arch, num_classes=info.num_classes)
    tx = optim.make_optimizer(tcfg.train.optimizer, 1000)
    state = sharding.place_state(
        teacher.init_classifier(model, tx, jax.random.PRNGKey(0), info.image_shape), mesh
    )
    batch_size = tcfg.train.batch_size
    rng = np.random.default_rng(0)
    batch = sharding.put_batch(
        {
            "image": rng.uniform(size=(batch_size, *info.image_shape)).astype(np.float32),
            "label": rng.integers(0, info.num_classes, batch_size).astype(np.int32),
        },
        mesh,
    )
    start = time.perf_counter()
    step = (
        teacher.jit_train_step(tcfg, model, tx, info, state, mesh, donate=False)
        .lower(state, batch, jax.random.PRNGKey(1))
        .compile()
    )
    compile_s = time.perf_counter() - start
    results["steps"]["teacher_step"] = dict(
        global_batch=batch_size,
        compile_s=compile_s,
        gflops_per_device=_flops(step) / 1e9,
        **_time_calls(lambda: step(state, batch, jax.random.PRNGKey(1)), repeats),
    )

    # The data-free run: Fast-5 synthesis call and KD step on a full pool.
    config = dfkd_digits_fast5.get_config()
    t_model = models.create_model(config.teacher.arch, num_classes=info.num_classes)
    s_model = models.create_model(config.student.arch, num_classes=info.num_classes)
    x = jnp.zeros((1, *info.image_shape))
    teacher_vars = sharding.replicate(t_model.init(jax.random.PRNGKey(2), x, train=False), mesh)
    synthesizer = loop.build_synthesizer(config, info, t_model, s_model, mesh)
    kd_tx = optim.make_optimizer(config.kd.optimizer, 1000)
    capacity = config.synthesis.batch_size * 8  # a pool of 8 synthesis batches
    images = jax.random.uniform(jax.random.PRNGKey(3), (capacity, *info.image_shape))
    dfkd_state = sharding.place_state(
        loop.DFKDState(
            epoch=jnp.zeros((), jnp.int32),
            synthesizer=synthesizer.init(jax.random.PRNGKey(4)),
            bn_memory=init_bn_memory(synthesizer.objective, teacher_vars, info.image_shape),
            pool=pool_lib.add(pool_lib.init_pool(capacity, info.image_shape), images),
            student=teacher.init_classifier(
                s_model, kd_tx, jax.random.PRNGKey(5), info.image_shape
            ),
        ),
        mesh,
    )
    adv = jnp.float32(config.synthesis.adv)
    synth, synth_compile = loop.compile_synthesis(
        config,
        synthesizer,
        dfkd_state,
        teacher_vars,
        jax.random.PRNGKey(6),
        adv,
        mesh=mesh,
        donate=False,
    )
    results["steps"]["synthesis_fast5"] = dict(
        global_batch=config.synthesis.batch_size,
        compile_s=synth_compile,
        gflops_per_device=_flops(synth) / 1e9,
        **_time_calls(lambda: synth(dfkd_state, teacher_vars, jax.random.PRNGKey(6), adv), repeats),
    )
    kd, kd_compile = loop.compile_kd_step(
        config,
        info,
        s_model,
        t_model,
        kd_tx,
        dfkd_state,
        teacher_vars,
        jax.random.PRNGKey(7),
        mesh=mesh,
        donate=False,
    )
    results["steps"]["kd_step"] = dict(
        global_batch=config.kd.batch_size,
        compile_s=kd_compile,
        gflops_per_device=_flops(kd) / 1e9,
        **_time_calls(lambda: kd(dfkd_state, teacher_vars, jax.random.PRNGKey(7)), repeats),
    )
    return results


def table(results: list[dict]) -> str:
    """A Markdown table: one row per (step, device count)."""
    lines = [
        "| step | devices | global batch | per-device batch | compile (s) | median step (ms) "
        "| min-max (ms) | GFLOP / device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in STEPS:
        base = None
        for r in results:
            s = r["steps"][name]
            base = base or s["median_s"]
            lines.append(
                f"| {name} | {r['devices']} | {s['global_batch']} | "
                f"{s['global_batch'] // r['devices']} | {s['compile_s']:.1f} | "
                f"{1e3 * s['median_s']:.1f} ({s['median_s'] / base:.2f}x) | "
                f"{1e3 * s['min_s']:.1f}-{1e3 * s['max_s']:.1f} | {s['gflops_per_device']:.3f} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    if _WORKER.value:
        print(json.dumps(measure(_WORKER.value, _REPEATS.value)))  # noqa: T201 -- read by parent
        return
    results = []
    for n in (int(d) for d in _DEVICES.value):
        env = dict(os.environ)
        if _SIMULATE.value:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, os.path.abspath(__file__), f"--worker={n}"]
        cmd.append(f"--repeats={_REPEATS.value}")
        logging.info("Measuring on %d device(s).", n)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"The {n}-device run failed:\n{out.stderr[-4000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(results, f, indent=2)
    print(table(results))  # noqa: T201 -- the script's output


if __name__ == "__main__":
    app.run(main)
