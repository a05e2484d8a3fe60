r"""Times the synthesis call of several distillation configs side by side (the benchmark's timing
pass for any variants): each compiled once, one warm-up call, then interleaved calls ended by
`block_until_ready()`; medians, compile seconds apart.

  python scripts/time_synthesis_calls.py --teacher=results/teachers/digits --repeats=5 \
      --variant=first_order=configs/dfkd_digits.py:fast5 \
      --variant=exact=configs/dfkd_digits.py:fast5_exact \
      --variant='held=configs/dfkd_digits.py:fast5_exact;synthesis.fast.inner_optimizer=adam_held_normalizer'

A variant is NAME=CONFIG[;key=value;...] (overrides as Python literals or strings). Without
`--teacher`, each variant's teacher is its config's architecture with random weights (speed does
not depend on the weights), so any shape can be timed without a trained teacher, e.g. NAYER's
CIFAR-100 call beside Fast-5's (`--out` also writes the rows and the device as JSON):

  python scripts/time_synthesis_calls.py --repeats=5 --out=nayer_timing.json \
      --variant=fast5=configs/dfkd_cifar.py:cifar100,fast5,wrn40_2-wrn16_2 \
      --variant=nayer=configs/dfkd_cifar.py:cifar100,nayer,wrn40_2-wrn16_2
"""

import ast
import json
import os
import sys

from absl import app, flags

from fastdfkd_jax import config_args, data, provenance, timing
from fastdfkd_jax.benchmark import configs as bench_configs
from fastdfkd_jax.benchmark.steps import random_teacher
from fastdfkd_jax.benchmark.timers import SynthesisTimer, make_setup, time_round_robin

_VARIANTS = flags.DEFINE_multi_string("variant", [], "NAME=CONFIG[;key=value;...]")
_TEACHER = flags.DEFINE_string(
    "teacher", "", "The teacher directory of every variant ('': random weights of each config's)."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per variant.")
_OUT = flags.DEFINE_string("out", "", "A JSON file for the rows and the environment ('': none).")


def parse_variant(text: str):
    """`(name, config)` of 'NAME=CONFIG[;key=value;...]', 'auto' keys resolved."""
    name, _, rest = text.partition("=")
    spec, *overrides = rest.split(";")
    config = bench_configs.copy(config_args.load_config(spec))
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a string
        *path, leaf = key.split(".")
        block = config
        for part in path:
            block = block[part]
        block[leaf] = value
    config.teacher.checkpoint = os.path.abspath(_TEACHER.value) if _TEACHER.value else ""
    return name, bench_configs.resolved(config)


def main(argv):
    del argv
    teacher_cache: dict = {}
    timers = {}
    batches = {}
    for text in _VARIANTS.value:
        name, config = parse_variant(text)
        if not config.teacher.checkpoint:  # random weights, cached under the "" checkpoint
            key = ("", config.teacher.arch)
            if key not in teacher_cache:
                info = data.get_info(config.dataset.name)
                teacher_cache[key] = random_teacher(config.teacher.arch, info)
        timers[name] = SynthesisTimer(make_setup(config, teacher_cache))
        batches[name] = config.synthesis.batch_size
    time_round_robin(timers, _REPEATS.value)
    rows = []
    for name, timer in timers.items():
        stats = timing.summarize(timer.seconds)
        rows.append(
            dict(
                variant=name,
                batch=batches[name],
                ms_per_image=1e3 * stats["median_s"] / batches[name],
                compile_s=timer.compile_seconds,
                **stats,
            )
        )
        sys.stdout.write(
            f"{name}: median {stats['median_s']:.4f} s/call (min {stats['min_s']:.4f}, max "
            f"{stats['max_s']:.4f}, n {stats['n']}), batch {batches[name]} "
            f"({rows[-1]['ms_per_image']:.3f} ms an image), compile {timer.compile_seconds:.1f} s\n"
        )
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            record = dict(variants=_VARIANTS.value, environment=provenance.environment(), rows=rows)
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    app.run(main)
