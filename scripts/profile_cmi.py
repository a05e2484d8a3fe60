r"""Where CMI's synthesis time goes: XLA's FLOP count of one CMI step, with n_neg negatives and with
one batch's worth (the count an empty bank's call needs), on the committed digits teacher.

  python scripts/profile_cmi.py [--config=configs/dfkd_digits.py:cmi500]

Compiles only (no step runs): the counts are the compiled program's `cost_analysis()`.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
from absl import app, flags

from fastdfkd_jax import backend, components, config_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = flags.DEFINE_string(
    "config", os.path.join(REPO, "configs", "dfkd_digits.py:cmi500"), "A CMI config."
)
_TEACHER = flags.DEFINE_string(
    "teacher", os.path.join(REPO, "results", "teachers", "digits"), "A teacher directory."
)


def step_cost(parts, state, n_neg: int) -> dict:
    """XLA's cost analysis of one CMI step with `n_neg` negatives."""
    synth = dataclasses.replace(parts.synthesizer, n_neg=n_neg)
    rng = jax.random.PRNGKey(0)
    carry = jax.eval_shape(synth.begin, state.synthesizer, rng, parts.teacher_vars)

    def one_step(carry, bn_memory, teacher_vars, student_vars, adv):
        return synth.advance(carry, bn_memory, teacher_vars, student_vars, adv, 0, 1, unroll=True)

    compiled = (
        jax.jit(one_step)
        .lower(carry, state.bn_memory, parts.teacher_vars, state.student.variables, jnp.float32(1))
        .compile()
    )
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, list) else cost


def main(argv):
    del argv
    config = config_args.load_config(_CONFIG.value)
    config.teacher.checkpoint = _TEACHER.value
    config = backend.resolve(config, backend.platform_of())
    parts = components.build(config)
    state = components.init_state(parts, components.run_keys(config.seed))
    s = parts.synthesizer
    print(f"CMI: batch {s.batch_size}, n_neg {s.n_neg}, feature dim {s.feature_dim()}")
    for n_neg in (s.n_neg, s.batch_size):
        cost = step_cost(parts, state, n_neg)
        print(
            f"n_neg {n_neg:5d}: {cost.get('flops', 0) / 1e9:.2f} GFLOP per step, "
            f"{cost.get('bytes accessed', 0) / 1e9:.2f} GB accessed"
        )


if __name__ == "__main__":
    app.run(main)
