r"""Student steps per compiled call: one per call against k per call, unrolled or as a lax.scan.

  python scripts/bench_kd_steps_per_call.py --config=configs/dfkd_digits.py:fast5 --k=5 \
      --repeats=5

Builds the config's parts (random teacher weights: speed does not depend on them) with a pool
full of noise, compiles `distill.kd_steps` three ways (1 step per call; k steps unrolled; k steps
in a `lax.scan`), and times k steps of each, interleaved call by call, each ended by
`block_until_ready()`, after one warm-up; it reports the medians per step, the compile seconds,
and the largest difference of the student parameters after the same k steps (the three compute
the same steps with the same keys). This is the measurement behind `kd.steps_per_call='auto'`
(fastdfkd_jax/backend.py).
"""

import json
import os
import statistics
import sys
import time

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "configs/dfkd_digits.py:fast5", "Config spec.")
_K = flags.DEFINE_integer("k", 5, "Steps per call of the multi-step variants.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds (medians reported).")
_OUT = flags.DEFINE_string("out", "", "Also write the JSON results here.")


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fastdfkd_jax import components, config_args, data, distill, models

    config = config_args.load_config(_CONFIG.value)
    config.mesh.data = 1
    info = data.get_info(config.dataset.name)
    teacher = models.create_model(config.teacher.arch, num_classes=info.num_classes)
    teacher_vars = teacher.init(
        jax.random.PRNGKey(1), jnp.zeros((1, *info.image_shape)), train=False
    )
    parts = components.build(config, teacher=(teacher, teacher_vars))
    keys = components.run_keys(0)
    pool = jax.random.uniform(jax.random.PRNGKey(2), (config.pool.capacity, *info.image_shape))
    k = _K.value
    variants = {"1 per call": (1, True), f"{k} unrolled": (k, True), f"{k} scanned": (k, False)}
    compiled, states, compile_s = {}, {}, {}
    for name, (num_steps, unroll) in variants.items():
        state = components.init_state(parts, keys, pool_images=pool)
        start = time.perf_counter()
        compiled[name], _ = distill.compile_kd_steps(
            state,
            parts.teacher_vars,
            keys["kd"],
            mesh=parts.mesh,
            num_steps=num_steps,
            unroll=unroll,
            **components.kd_step_options(parts),
        )
        compile_s[name] = time.perf_counter() - start
        states[name] = state

    def k_steps(name, first):
        fn, (num_steps, _) = compiled[name], variants[name]
        state = states[name]
        for i in range(0, k, num_steps):
            state, _ = fn(state, parts.teacher_vars, keys["kd"], np.int32(first + i))
        jax.block_until_ready(state)
        states[name] = state

    seconds = {name: [] for name in variants}
    for round_ in range(_REPEATS.value + 1):  # round 0: warm-up
        for name in variants:
            start = time.perf_counter()
            k_steps(name, round_ * k)
            if round_:
                seconds[name].append((time.perf_counter() - start) / k)
    reference = jax.tree.leaves(states["1 per call"].student.params)
    result = dict(
        config=_CONFIG.value,
        platform=jax.devices()[0].platform,
        kd_batch=config.kd.batch_size,
        k=k,
        load_average=os.getloadavg(),
        variants={
            name: dict(
                median_step_s=statistics.median(seconds[name]),
                compile_s=compile_s[name],
                max_param_difference=max(
                    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(
                        jax.tree.leaves(states[name].student.params), reference, strict=True
                    )
                ),
            )
            for name in variants
        },
    )
    text = json.dumps(result, indent=2)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
