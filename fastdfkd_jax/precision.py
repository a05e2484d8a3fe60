"""The numeric policy of a run's steps: one config key, `precision`, applied by JAX's own means.

| policy          | models compute in | float32 matmuls and convolutions          | parameters |
|-----------------|-------------------|-------------------------------------------|------------|
| `highest`       | float32           | full float32 (`HIGHEST`)                  | float32    |
| `tensorfloat32` | float32           | TF32 on NVIDIA GPUs, 3-pass bf16 on TPUs  | float32    |
| `bfloat16`      | bfloat16          | as `tensorfloat32` (the few left: losses) | float32    |

`tensorfloat32` is the default (`DEFAULT_POLICY`): the speed GPU users expect, and on every
accelerator the same contract (about 10 bits of mantissa in the products, float32 sums). XLA:CPU
computes float32 matmuls and convolutions exactly whatever the requested precision, so on a CPU
`highest` and `tensorfloat32` give bit-identical results (tests/fastdfkd_jax/test_precision.py).

How each part is applied:
- the matmul precision: `jax.default_matmul_precision` around the lowering of every compiled step
  (`compilation.precision_scope`, entered by the jobs around their compilation);
- the compute dtype: the `dtype` field of every Flax module of `fastdfkd_jax.models` (classifiers,
  segmentation models, generators): None (Flax's default: the dtype of the inputs and parameters,
  float32) or bfloat16; parameters are kept in float32 (`param_dtype`, Flax's default),
  so optimizers, gradients and checkpoints stay float32; BatchNorm statistics are reduced in
  float32 (Flax's default) and the losses promote logits to float32 (`synthesis.losses`);
- no loss scaling: bfloat16 has float32's 8-bit exponent, so gradients that float32 represents do
  not underflow in bfloat16, and the gradients that reach the optimizers are float32 (those of the
  float32 parameters). Loss scaling exists for float16 (5-bit exponent), which no policy uses.

`check_backend` refuses `bfloat16` before compiling on devices without bfloat16 arithmetic
(NVIDIA GPUs before compute capability 8.0, i.e. before Ampere). XLA:CPU supports bfloat16 by
computing in float32 and rounding: correct, but not faster (docs/accelerators.md).
"""

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp

POLICIES = ("highest", "tensorfloat32", "bfloat16")
DEFAULT_POLICY = "tensorfloat32"
# bfloat16 tensor-core arithmetic on NVIDIA GPUs starts with Ampere (compute capability 8.0; CUDA
# programming guide, "Arithmetic Instructions"); older GPUs would emulate it.
MIN_BFLOAT16_COMPUTE_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class Policy:
    """A numeric policy.

    Attributes:
      name: one of `POLICIES`.
      matmul_precision: the value of `jax.default_matmul_precision` for float32 dots/convolutions.
      compute_dtype: the models' `dtype`: None (compute in the inputs' and parameters' dtype,
        float32) or bfloat16 (their parameters stay float32).
    """

    name: str
    matmul_precision: str
    compute_dtype: Any


_POLICIES = {
    "highest": Policy("highest", "highest", None),
    "tensorfloat32": Policy("tensorfloat32", "tensorfloat32", None),
    "bfloat16": Policy("bfloat16", "tensorfloat32", jnp.bfloat16),
}


def validate(name: str, key: str = "precision") -> None:
    """Raises a ValueError naming `key` and the policies when `name` is not one of them."""
    if name not in _POLICIES:
        raise ValueError(f"Unknown {key} {name!r}; choose one of {', '.join(POLICIES)}.")


def get(name: str) -> Policy:
    """The `Policy` called `name` (a ValueError listing the names otherwise)."""
    validate(name)
    return _POLICIES[name]


def compute_dtype(name: str) -> Any:
    """The models' `dtype` under policy `name` (None: float32 from the inputs, or bfloat16)."""
    return get(name).compute_dtype


def bfloat16_unsupported_reason(device: Any) -> str | None:
    """Why `device` cannot compute in bfloat16, or None when it can.

    TPUs and CPUs can (XLA:CPU by way of float32); NVIDIA GPUs from compute capability 8.0 on.
    A GPU whose compute capability is not reported is given the benefit of the doubt.
    """
    if device.platform != "gpu":
        return None
    capability = getattr(device, "compute_capability", None)
    if not capability:
        return None
    major, minor = (int(p) for p in str(capability).split(".")[:2])
    if (major, minor) < MIN_BFLOAT16_COMPUTE_CAPABILITY:
        need = ".".join(map(str, MIN_BFLOAT16_COMPUTE_CAPABILITY))
        return (
            f"{device.device_kind} (compute capability {capability}) has no bfloat16 arithmetic "
            f"(it needs {need}, Ampere or newer)"
        )
    return None


def check_backend(name: str, devices: Iterable[Any]) -> None:
    """Raises a ValueError before any compilation when policy `name` cannot run on `devices`."""
    if get(name).compute_dtype != jnp.bfloat16:
        return
    for device in devices:
        reason = bfloat16_unsupported_reason(device)
        if reason:
            raise ValueError(
                f"precision='bfloat16' is not supported here: {reason}. Use "
                "precision='tensorfloat32' or 'highest'."
            )
