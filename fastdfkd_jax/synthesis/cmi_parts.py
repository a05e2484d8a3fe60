"""CMI's pieces (contrastive model inversion): features, projection head, memory bank, loss.

Pure functions over explicit state, as the original (zju-vipa/Fast-Datafree,
`datafree/synthesis/contrastive.py`) computes them:

- `capture_instance_means`: the per-sample spatial mean of the INPUT of chosen modules of the
  teacher (by default every `nn.BatchNorm`), concatenated: one feature vector [B, D] per image.
- `MLPHead`: Linear(D, D) -> ReLU -> Linear(D, dim) -> L2 normalization, PyTorch's default init.
- `MemoryBank`, `init_bank`, `bank_add`, `bank_negatives`: a ring buffer of [local, global]
  feature pairs [size, 2D] of earlier batches, and the draw of up to `k` distinct rows of its filled
  part (fixed shapes: invalid rows are masked).
- `contrastive_loss`: the InfoNCE loss between the projections of the local and global views of
  the current batch and of the cached negatives.

Which modules give the features (`FEATURE_LAYERS`, the config's `synthesis.cmi.feature_layers`):
the original's `datafree_kd.py` hooks the input of every BatchNorm, except for a ResNet-34 teacher,
where it hooks `layer1..layer4`: the inputs of the four stages (the stem's output and the first
three stages' outputs). `resolve_feature_layers` is that rule; `feature_filter` the module test.

The original's bank draws nothing when it has been filled exactly (`n_updates == size`: its
pointer has wrapped to 0 but its "full" test is `n_updates > size`; with CIFAR's 256 images per
call and 40,960 rows, at call 160). The contrastive loss of every step of that call is then NaN (a
mean over the empty slice of cached rows), but its gradient is not: the backward of a mean over an
empty slice is empty, so the generator, z and the head still get the finite gradients of the
other terms and nothing after that call is affected. What the NaN does break is that call's
lowest-loss selection (`best_cost > nan` is false): the call returns its FIRST iterate's images (the
freshly re-initialized generator's) and their features, one batch of nearly untrained images in the
pool. Here the bank counts as full from `n_updates >= size`, so that call draws negatives like any
other and keeps its lowest-loss iterate: the documented fix (docs/benchmarks.md, CMI-500).
"""

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from fastdfkd_jax.checks import check_choice
from fastdfkd_jax.models import layers, probes
from fastdfkd_jax.synthesis import losses

# Which teacher modules' inputs give CMI's instance features (`synthesis.cmi.feature_layers`).
FEATURE_LAYERS = ("auto", "batchnorm", "stages")
# The teachers whose features the original takes from the stages (`datafree_kd.py`).
STAGE_FEATURE_TEACHERS = ("resnet34",)
# The first block of each ResNet stage: `layer{stage}_0` (PyTorch's `layer{stage}[0]`), whose input
# is the input of the original's hooked `layer{stage}`.
_STAGE_ENTRY = re.compile(r"layer\d+_0")

# F.normalize's default epsilon (the head's output normalization).
NORMALIZE_EPS = 1e-12
# Logit of a left-out (invalid) column: finite, so no inf * 0 reaches a gradient, and far below
# any real logit (|cos| / temperature <= 1 / temperature).
MASKED_LOGIT = -1e9


def resolve_feature_layers(feature_layers: str, teacher_arch: str) -> str:
    """'batchnorm' or 'stages' for the config's `feature_layers` and the teacher's zoo name.

    'auto' is the original's rule: 'stages' for a ResNet-34 teacher, 'batchnorm' for every other.
    """
    check_choice("synthesis.cmi.feature_layers", feature_layers, FEATURE_LAYERS)
    if feature_layers != "auto":
        return feature_layers
    return "stages" if teacher_arch in STAGE_FEATURE_TEACHERS else "batchnorm"


def feature_filter(feature_layers: str) -> Callable[[probes.LayerCall], bool]:
    """The layer-call test of 'batchnorm' (every BatchNorm) or 'stages' (each ResNet stage's
    first block, `layer{k}_0`: its input is the input of the original's `layer{k}`).
    """
    if feature_layers == "batchnorm":
        return lambda call: call.kind == probes.BATCHNORM
    if feature_layers == "stages":
        return lambda call: bool(call.name and _STAGE_ENTRY.fullmatch(call.name))
    raise ValueError(
        f"feature_filter takes 'batchnorm' or 'stages' (resolved), got {feature_layers!r}."
    )


def instance_mean(inputs: jax.Array) -> jax.Array:
    """Per-sample spatial mean of a layer's input: [B, ..., C] -> [B, C]."""
    return jnp.mean(inputs, axis=tuple(range(1, inputs.ndim - 1)))


def capture_instance_means(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    module_filter: Callable[[probes.LayerCall], bool] | None = None,
    **kwargs,
) -> tuple[jax.Array, jax.Array]:
    """Applies `model`; returns (output, per-sample spatial means of the chosen modules' inputs).

    The original's `InstanceMeanHook` records `input.mean(dim=[2, 3])` of each hooked module: on
    every teacher BatchNorm by default (its WRN setting), on `layer1..layer4` for a ResNet-34
    teacher (pass a `module_filter` selecting those blocks' first calls).

    Args:
      model: a Flax module.
      variables: its variables.
      x: input batch [B, H, W, C].
      module_filter: which layer calls to record (`probes.LayerCall` -> bool; their input);
        default: every BatchNorm.
      **kwargs: passed to `model.apply` (e.g. `train=False`).

    Returns:
      (output, features float [B, D]), D = the sum of the recorded inputs' channels, in call order.

    """
    if module_filter is None:
        module_filter = feature_filter("batchnorm")

    means: list[jax.Array] = []

    def record(call: probes.LayerCall) -> None:
        if module_filter(call):
            means.append(instance_mean(call.inputs))

    with probes.observe(record):
        out = model.apply(variables, x, **kwargs)
    if not means:
        raise ValueError(f"No module of {type(model).__name__} matched the CMI feature filter.")
    return out, jnp.concatenate(means, axis=-1)


class MLPHead(nn.Module):
    """CMI's projection head: [N, D] -> Linear(D, hidden) -> ReLU -> Linear(hidden, dim) -> L2 norm.

    Attributes:
      dim: output features (the original's `head_dim`, 256 in its CIFAR runs).
      hidden: hidden width; None means D (the original).

    """

    dim: int
    hidden: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Projections [N, dim] of features `x` [N, D], each row of unit L2 norm."""
        d_in = x.shape[-1]
        hidden = self.hidden or d_in
        x = nn.Dense(
            hidden,
            kernel_init=layers.torch_default,
            bias_init=layers.torch_bias_init(d_in),
            name="fc1",
        )(x)
        x = nn.relu(x)
        x = nn.Dense(
            self.dim,
            kernel_init=layers.torch_default,
            bias_init=layers.torch_bias_init(hidden),
            name="fc2",
        )(x)
        norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
        return x / jnp.maximum(norm, NORMALIZE_EPS)


@flax.struct.dataclass
class MemoryBank:
    """CMI's memory bank of instance features.

    Attributes:
      data: float32 [size, 2D], rows `[local features, global features]` of earlier batches.
      ptr: int32 scalar, the next row to write.
      n_updates: int32 scalar, rows written so far (grows past `size`).

    """

    data: jax.Array
    ptr: jax.Array
    n_updates: jax.Array


def init_bank(size: int, dim: int) -> MemoryBank:
    """An empty bank of `size` rows of `dim` (= 2D) features (zeros: unread until written)."""
    if size < 1 or dim < 1:
        raise ValueError(f"bank size and dim must be >= 1, got size={size}, dim={dim}.")
    return MemoryBank(
        data=jnp.zeros((size, dim), jnp.float32),
        ptr=jnp.zeros((), jnp.int32),
        n_updates=jnp.zeros((), jnp.int32),
    )


def bank_add(bank: MemoryBank, features: jax.Array) -> MemoryBank:
    """Writes `features` [n, 2D] at the pointer (wrapping at the end), advances it by n.

    The original writes `data[ptr:ptr+n]` without wrapping inside one write; with `size` a
    multiple of n (its 40960 = 160 x 256) the two agree.
    """
    size, dim = bank.data.shape
    n = features.shape[0]
    if features.ndim != 2 or features.shape[1] != dim:
        raise ValueError(f"bank features must be [n, {dim}], got {features.shape}.")
    if n > size:
        raise ValueError(f"Cannot add {n} rows to a bank of {size}.")
    rows = (bank.ptr + jnp.arange(n)) % size
    return MemoryBank(
        data=bank.data.at[rows].set(jax.lax.stop_gradient(features).astype(bank.data.dtype)),
        ptr=(bank.ptr + n) % size,
        n_updates=bank.n_updates + n,
    )


def bank_negatives(bank: MemoryBank, rng: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Up to `k` distinct random rows of the bank's filled part, and which of the k are real.

    Filled part: every row once `n_updates >= size` (the original waits for `>`, see the module
    docstring), else rows `[0, ptr)`. The original draws `min(k, filled)` rows without replacement
    (`random.sample`); here the draw is a random order of the filled rows, of which the first
    `min(k, filled)` are marked valid (fixed shapes for jit).

    Args:
      bank: the bank.
      rng: PRNG key.
      k: how many rows (the original's `n_neg`, 4096), at most the bank size.

    Returns:
      (rows float32 [k, 2D], valid bool [k]).

    """
    size = bank.data.shape[0]
    if not 1 <= k <= size:
        raise ValueError(f"k must be in [1, bank size {size}], got {k}.")
    filled = jnp.where(bank.n_updates >= size, size, bank.ptr)
    # Random keys for the filled rows, +inf for the others: the k smallest are a uniform draw
    # without replacement from the filled rows (the empty ones sort last).
    keys = jax.random.uniform(rng, (size,))
    keys = jnp.where(jnp.arange(size) < filled, keys, jnp.inf)
    _, order = jax.lax.top_k(-keys, k)
    valid = jnp.arange(k) < jnp.minimum(k, filled)
    return bank.data[order], valid


def contrastive_loss(
    proj_local: jax.Array,
    proj_global: jax.Array,
    valid: jax.Array,
    batch: int,
    temperature: float,
    bank_used: jax.Array | bool,
) -> jax.Array:
    """CMI's contrastive loss on projected features of the batch and the cached negatives.

    Rows 0..batch-1 of both inputs are the current batch, the others the bank's draw. Logits
    `proj_local @ stop_gradient(proj_global).T / temperature` [R, R]; the positive of row i is
    column i; per-row cross-entropy `l` [R]. Invalid cached rows are left out as rows and as
    columns. The loss is `mean(l[:batch]) + mean(l[batch:] over valid rows)` once the bank has been
    written (`bank_used`), else `mean(l[:batch])` (the original's `mean(l)` when the bank is empty).
    The global projections are detached: the generator learns through the local view only.

    Args:
      proj_local: float [R, d], unit rows (the head's output for [local, cached local]).
      proj_global: float [R, d] (for [global, cached global]).
      valid: bool [R - batch], which cached rows are real (`bank_negatives`).
      batch: B, the current batch's rows.
      temperature: the original's `cr_T`.
      bank_used: bool scalar, the original's `n_updates > 0`.

    Returns:
      float scalar.

    """
    rows = proj_local.shape[0]
    if proj_global.shape != proj_local.shape or valid.shape != (rows - batch,):
        raise ValueError(
            f"contrastive_loss: proj_local {proj_local.shape}, proj_global {proj_global.shape} and "
            f"valid {valid.shape} do not fit a batch of {batch}."
        )
    keep = jnp.concatenate([jnp.ones((batch,), bool), valid])
    logits = proj_local @ jax.lax.stop_gradient(proj_global).T / temperature
    logits = jnp.where(keep[None, :], logits, MASKED_LOGIT)
    per_row = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(rows))
    current = jnp.mean(per_row[:batch])
    count = jnp.sum(valid)
    cached = jnp.sum(jnp.where(valid, per_row[batch:], 0.0)) / jnp.maximum(count, 1)
    return current + jnp.where(jnp.logical_and(bank_used, count > 0), cached, 0.0)


def capture_records_and_means(
    model: nn.Module, variables: Any, x: jax.Array, feature_layers: str = "batchnorm"
) -> tuple[jax.Array, list[losses.BNRecord], jax.Array]:
    """One eval-mode pass: logits, the BN records (`losses.capture_bn_inputs`) and the instance
    features [B, D] of `x`: the per-sample spatial means of the inputs of the modules that
    `feature_filter(feature_layers)` selects ('batchnorm' or 'stages', resolved).
    """
    records: list[losses.BNRecord] = []
    means: list[jax.Array] = []
    is_feature = feature_filter(feature_layers)

    def record(call: probes.LayerCall) -> None:
        if call.kind == probes.BATCHNORM:
            records.append(losses.bn_record(call))
        if is_feature(call):
            means.append(instance_mean(call.inputs))

    with probes.observe(record):
        logits = model.apply(variables, x, train=False)
    if not means:
        raise ValueError(
            f"CMI's feature_layers={feature_layers!r} matched no module of {type(model).__name__}."
        )
    return logits, records, jnp.concatenate(means, axis=-1)
