r"""Compiled step time of every training step on 1, 2, 4, 8 (simulated) devices.

  python scripts/bench_scaling.py --devices=1,2,4,8 --repeats=10

For each device count a fresh Python process (XLA reads the forced device count once, before JAX
starts) builds the mesh over that many devices and compiles, with the shardings the jobs use, the
teacher step (`configs/teacher_digits.py`), the student KD step and the Fast-5 synthesis call
(`configs/dfkd_digits.py:fast5`; models randomly initialized: speed does not depend on weights). It
reports the compile time, the median (and min/max) of `--repeats` timed calls, each ended by
`block_until_ready()`, after one untimed warm-up call, and XLA's per-device FLOP count. Global
batches are the configs'; per-device batches shrink as devices grow.

On a CPU host the "devices" are threads sharing its cores: the table then measures the overhead of
partitioning (collectives, smaller kernels), not a speed-up. On an accelerator host, pass
`--devices=1,2,4,8 --nosimulate` to use real devices.
"""

import json
import os
import subprocess
import sys

from absl import app, flags, logging

# The config files, next to this scripts/ folder (loaded by path).
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per step (the median is reported).")
_SIMULATE = flags.DEFINE_bool(
    "simulate", True, "Force N CPU devices with XLA_FLAGS (False: use N real devices)."
)
_OUT = flags.DEFINE_string("out", "", "Also write the JSON results here.")
_WORKER = flags.DEFINE_integer("worker", 0, "Internal: measure on this many devices and exit.")

STEPS = ("teacher_step", "kd_step", "synthesis_fast5")
POOL_BATCHES = 8  # the KD step samples a pool holding this many synthesis batches


def measure(num_devices: int, repeats: int) -> dict:
    """Compiles and times the three steps on a mesh of `num_devices`; returns a JSON-able dict."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fastdfkd_jax import (
        compilation,
        components,
        config_args,
        data,
        distill,
        models,
        optim,
        sharding,
        state,
        teacher,
        timing,
    )

    mesh = sharding.make_mesh(sharding.mesh_config(data=num_devices))
    results = dict(devices=num_devices, platform=jax.devices()[0].platform, steps={})

    def record(name, compiled, compile_s, global_batch, call):
        results["steps"][name] = dict(
            global_batch=global_batch,
            compile_s=compile_s,
            gflops_per_device=compilation.flops(compiled) / 1e9,
            **timing.time_calls(call, repeats),
        )

    # Teacher training step.
    tcfg = config_args.load_config(os.path.join(CONFIGS, "teacher_digits.py"))
    info = data.get_info(tcfg.dataset.name)
    model = models.create_model(tcfg.model.arch, num_classes=info.num_classes)
    tx = optim.make_optimizer(tcfg.train.optimizer, 1000)
    tstate = sharding.place_state(
        state.init_classifier(model, tx, jax.random.PRNGKey(0), info.image_shape), mesh
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
    step, compile_s = teacher.compile_train_step(
        tstate,
        model=model,
        tx=tx,
        aug=tcfg.train.augment,
        mean=info.mean,
        std=info.std,
        batch_size=batch_size,
        image_shape=info.image_shape,
        mesh=mesh,
        donate=False,
    )
    record("teacher_step", step, compile_s, batch_size,
           lambda: step(tstate, batch, jax.random.PRNGKey(1)))  # fmt: skip

    # The data-free run: Fast-5 synthesis call and KD step on a full pool.
    config = config_args.load_config(os.path.join(CONFIGS, "dfkd_digits.py:fast5"))
    config.pool.capacity = config.synthesis.batch_size * POOL_BATCHES
    t_model = models.create_model(config.teacher.arch, num_classes=info.num_classes)
    x = jnp.zeros((1, *info.image_shape))
    t_vars = t_model.init(jax.random.PRNGKey(2), x, train=False)
    parts = components.build(config, mesh, teacher=(t_model, t_vars))
    images = jax.random.uniform(jax.random.PRNGKey(3), (config.pool.capacity, *info.image_shape))
    dfkd_state = components.init_state(parts, components.run_keys(config.seed), pool_images=images)
    adv = components.adv_array(config.synthesis.adv)
    synth, synth_compile = parts.synthesizer.compile_call(
        dfkd_state, parts.teacher_vars, jax.random.PRNGKey(6), adv, mesh=mesh, donate=False
    )
    record("synthesis_fast5", synth, synth_compile, config.synthesis.batch_size,
           lambda: synth(dfkd_state, parts.teacher_vars, jax.random.PRNGKey(6), adv))  # fmt: skip
    kd, kd_compile = distill.compile_kd_step(
        dfkd_state,
        parts.teacher_vars,
        jax.random.PRNGKey(7),
        mesh=mesh,
        donate=False,
        **components.kd_step_options(parts),
    )
    record("kd_step", kd, kd_compile, config.kd.batch_size,
           lambda: kd(dfkd_state, parts.teacher_vars, jax.random.PRNGKey(7)))  # fmt: skip
    return results


def table(results: list[dict]) -> str:
    """A Markdown table: one row per (step, device count)."""
    from fastdfkd_jax import reporting

    header = (
        "step", "devices", "global batch", "per-device batch", "compile (s)", "median step (ms)",
        "min-max (ms)", "GFLOP / device",
    )  # fmt: skip
    rows = []
    for name in STEPS:
        base = None
        for r in results:
            s = r["steps"][name]
            base = base or s["median_s"]
            rows.append(
                (
                    name,
                    r["devices"],
                    s["global_batch"],
                    s["global_batch"] // r["devices"],
                    f"{s['compile_s']:.1f}",
                    f"{1e3 * s['median_s']:.1f} ({s['median_s'] / base:.2f}x)",
                    f"{1e3 * s['min_s']:.1f}-{1e3 * s['max_s']:.1f}",
                    f"{s['gflops_per_device']:.3f}",
                )
            )
    return reporting.markdown_table(header, rows, align="l" * 8)


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
