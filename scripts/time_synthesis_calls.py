r"""Times the synthesis call of several distillation configs side by side (the benchmark's timing
pass for any variants): each compiled once, one warm-up call, then interleaved calls ended by
`block_until_ready()`; medians, compile seconds apart.

  python scripts/time_synthesis_calls.py --teacher=results/teachers/digits --repeats=5 \
      --variant=first_order=configs/dfkd_digits.py:fast5 \
      --variant=exact=configs/dfkd_digits.py:fast5_exact \
      --variant='held=configs/dfkd_digits.py:fast5_exact;synthesis.fast.inner_optimizer=adam_held_normalizer'

A variant is NAME=CONFIG[;key=value;...] (overrides as Python literals or strings).
"""

import ast
import os
import sys

from absl import app, flags

from fastdfkd_jax import config_args, timing
from fastdfkd_jax.benchmark import configs as bench_configs
from fastdfkd_jax.benchmark.timers import SynthesisTimer, make_setup, time_round_robin

_VARIANTS = flags.DEFINE_multi_string("variant", [], "NAME=CONFIG[;key=value;...]")
_TEACHER = flags.DEFINE_string("teacher", "", "The teacher directory of every variant.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per variant.")


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
    config.teacher.checkpoint = os.path.abspath(_TEACHER.value)
    return name, bench_configs.resolved(config)


def main(argv):
    del argv
    teacher_cache: dict = {}
    timers = {}
    for text in _VARIANTS.value:
        name, config = parse_variant(text)
        timers[name] = SynthesisTimer(make_setup(config, teacher_cache))
    time_round_robin(timers, _REPEATS.value)
    for name, timer in timers.items():
        stats = timing.summarize(timer.seconds)
        sys.stdout.write(
            f"{name}: median {stats['median_s']:.4f} s/call (min {stats['min_s']:.4f}, max "
            f"{stats['max_s']:.4f}, n {stats['n']}), compile {timer.compile_seconds:.1f} s\n"
        )


if __name__ == "__main__":
    app.run(main)
