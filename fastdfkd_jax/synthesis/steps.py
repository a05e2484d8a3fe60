"""Running k optimization steps inside a jitted function: unrolled or as a rolled `lax.scan`.

Measured on this project's CPU machines (jax 0.10.2, docs/benchmarks.md): convolutions inside an
XLA while loop (what a rolled `lax.scan` lowers to) run about 8x slower than the same steps
unrolled, and a partially unrolled scan is slower still. One reason shows in the compiled
program: XLA:CPU leaves a weight-gradient convolution inside a loop body in its original dimension
order and emits it as a plain loop nest, where straight-line code gets transposed operands and
the Eigen convolution. So on CPU the steps are unrolled; on accelerators a rolled scan compiles
once for any count.

Unrolled steps are `lax.scan(..., unroll=True)`: JAX traces the body once and lowers it
`num_steps` times in a row, with no loop, so the program is that of a Python loop over the body
at a fraction of the tracing and lowering time, which is most of what a run with a warm
compilation cache spends compiling (docs/accelerators.md). One step is the body called directly:
JAX lowers a scan of length 1 as a loop.
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
    """`lax.scan(body, carry, first_step + arange(num_steps), unroll=unroll)`.

    Args:
      body: `(carry, step_index) -> (carry, output)`.
      carry: the initial carry.
      num_steps: how many steps.
      unroll: the steps one after the other, no loop (True), or a rolled loop (False).
      first_step: index of the first step (chunks of a longer run pass their offset).
    Returns:
      (final carry, outputs stacked along a new leading axis of size `num_steps`).
    """
    indices = first_step + jnp.arange(num_steps)
    if unroll and num_steps == 1:
        # JAX lowers a scan of one step as a loop whatever `unroll` says (unroll=True is one
        # step per iteration), and XLA:CPU compiles the convolutions of a loop body slowly even
        # when the loop runs once (XLA removes the loop only after choosing their kernels).
        carry, output = body(carry, indices[0])
        return carry, jax.tree.map(lambda x: jnp.expand_dims(x, 0), output)
    return jax.lax.scan(body, carry, indices, unroll=bool(unroll))
