"""Running k optimization steps inside a jitted function: unrolled or as a `lax.scan`.

Measured on this project's CPU machines (jax 0.10.2, docs/benchmarks.md): convolutions inside an
XLA while loop (what `lax.scan` lowers to) run about 8x slower than the same steps unrolled, and a
partially unrolled scan is slower still. So on CPU the inner synthesis steps are unrolled at trace
time (compile time grows with the step count); on accelerators a scan compiles once for any count.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def run_steps(
    body: Callable[[Any, jax.Array], tuple[Any, Any]],
    carry: Any,
    num_steps: int,
    *,
    unroll: bool,
    first_step: jax.Array | int = 0,
) -> tuple[Any, Any]:
    """`lax.scan(body, carry, first_step + arange(num_steps))`, or the same unrolled.

    Args:
      body: `(carry, step_index) -> (carry, output)`.
      carry: the initial carry.
      num_steps: how many steps.
      unroll: trace a Python loop (True) or a `lax.scan` (False).
      first_step: index of the first step (chunks of a longer run pass their offset).
    Returns:
      (final carry, outputs stacked along a new leading axis of size `num_steps`).
    """
    indices = first_step + jnp.arange(num_steps)
    if not unroll:
        return jax.lax.scan(body, carry, indices)
    outputs = []
    for k in range(num_steps):
        carry, out = body(carry, indices[k])
        outputs.append(out)
    return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)
