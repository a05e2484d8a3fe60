"""Placement: the device mesh, sharding rules, global batches, multi-host initialization.

Every jitted step of the project runs over one `jax.sharding.Mesh` with a `data` axis. Batches (real
images, synthetic images, latents, targets, the memory pool) are split along their leading axis over
`data`; model and optimizer states are replicated (`STATE_RULES` says which leaves are sharded).
Because `jax.jit` computes with global arrays, reductions over the batch (BatchNorm statistics,
means of losses) are over the global batch, so a sharded run is the same computation as a
single-device run; XLA inserts the all-reduces.

Batch sizes in configs are *global* (summed over every device of every process); the per-device
batch is `global // mesh.shape['data']` (`per_device_batch`). Learning rates are given for the
global batch; `optim.scale_learning_rate` applies the config's `lr_scaling` rule when it is not
'none'.

Multi-host: `initialize_distributed` starts `jax.distributed` when the config or the environment
asks; the mesh then spans every process's devices, each process feeds only its rows of a global
batch (`process_rows`, `put_batch`, `put_process_batch`), and only process 0 writes files.
"""

import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
# Environment variables that mean "this process is one of several": a coordinator set for
# `jax.distributed` or a multi-process launcher. (On a Cloud TPU pod slice set
# `config.distributed.enabled=True`: JAX then detects the coordinator itself.)
_COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
_PROCESS_COUNT_ENVS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _environment_asks_for_distributed() -> bool:
    if os.environ.get(_COORDINATOR_ENV):
        return True
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in _PROCESS_COUNT_ENVS)


def initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
    """Starts `jax.distributed` when the config or the environment asks for it.

    Call it before anything touches a device. On Cloud TPU pod slices, SLURM and Open MPI, JAX
    auto-detects the coordinator, the process count and the process id; on other clusters (and for
    multi-process CPU runs) give them in the config.

    Args:
      cfg: the `distributed` block: `enabled` (bool), `coordinator_address` ('' = auto-detect, as on
        Cloud TPU), `num_processes` and `process_id` (-1 = auto-detect), `cpu_collectives`
        ('' or 'gloo', for multi-process CPU runs), `heartbeat_timeout_seconds` (a process silent
        this long is lost: every other fails naming it) and `shutdown_timeout_seconds`.

    """
    if not (cfg.enabled or _environment_asks_for_distributed()):
        return
    if jax.distributed.is_initialized():
        return
    if cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    kwargs = dict(
        heartbeat_timeout_seconds=cfg.heartbeat_timeout_seconds,
        shutdown_timeout_seconds=cfg.shutdown_timeout_seconds,
    )
    if cfg.coordinator_address:
        kwargs["coordinator_address"] = cfg.coordinator_address
    if cfg.num_processes >= 0:
        kwargs["num_processes"] = cfg.num_processes
    if cfg.process_id >= 0:
        kwargs["process_id"] = cfg.process_id
    jax.distributed.initialize(**kwargs)
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh(cfg: ml_collections.ConfigDict, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh over `cfg.data` devices (-1: every device of every process), axis `data`.

    Devices are ordered by (process, id), so each process owns one contiguous block of the `data`
    axis and therefore one contiguous block of rows of every batch. `devices`: the devices to
    choose from (default: every device of JAX's default backend; e.g. `jax.devices('cpu')` for
    the simulated CPU devices of the tests on a machine with a GPU).
    """
    devices = list(jax.devices() if devices is None else devices)
    available = len(devices)
    size = available if cfg.data == -1 else cfg.data
    if size < 1:
        raise ValueError(f"mesh.data must be -1 or >= 1, got {cfg.data}.")
    if size > available:
        raise ValueError(
            f"mesh.data={size} asks for more devices than the {available} present "
            f"({jax.process_count()} process(es), {jax.local_device_count()} local device(s) each)."
        )
    if jax.process_count() > 1 and size != available:
        raise ValueError(
            f"mesh.data={size} must use all {available} devices in a multi-process run "
            "(every process feeds its rows of each batch); use mesh.data=-1."
        )
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))[:size]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_size(mesh: Mesh) -> int:
    """The number of devices along `data` (the number of batch shards)."""
    return mesh.shape[DATA_AXIS]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The whole array on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_batch_divides(global_batch: int, mesh: Mesh, name: str) -> None:
    """Raises a ValueError naming both numbers when the batch does not split evenly."""
    n = data_size(mesh)
    if global_batch % n:
        raise ValueError(
            f"{name}={global_batch} does not divide by the data axis size {n}; "
            f"choose a multiple of {n}."
        )


def per_device_batch(global_batch: int, mesh: Mesh, name: str = "batch_size") -> int:
    """The rows each device computes for a global batch (checked to divide)."""
    check_batch_divides(global_batch, mesh, name)
    return global_batch // data_size(mesh)


def process_rows(global_batch: int, mesh: Mesh) -> slice:
    """The contiguous rows of a `[global_batch, ...]` batch that this process's devices hold."""
    indices = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
    starts = sorted(index[0].start or 0 for index in indices.values())
    per_device = global_batch // data_size(mesh)
    start, stop = starts[0], starts[-1] + per_device
    if stop - start != per_device * len(starts):
        raise ValueError(f"This process's devices do not hold contiguous rows: {starts}.")
    return slice(start, stop)


def put_batch(batch: Any, mesh: Mesh) -> Any:
    """Host arrays of the *global* batch -> global arrays sharded along `data`.

    Every process passes the same global batch (it is cheap on the host: a batch of indices and the
    rows they select); each keeps only its own rows, so this works single- and multi-host.
    """

    def put(x):
        x = np.asarray(x)
        return put_process_batch(x[process_rows(x.shape[0], mesh)], mesh, x.shape[0])

    return jax.tree.map(put, batch)


def put_process_batch(local: Any, mesh: Mesh, global_batch: int) -> Any:
    """Rows `process_rows(global_batch, mesh)` read by this process -> global arrays on `data`.

    For inputs that each process reads on its own (its share of an evaluation split): no process
    ever holds the whole batch.
    """
    sharding = batch_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (global_batch, *x.shape[1:]))

    return jax.tree.map(put, local)


def split_share(n: int) -> tuple[slice, int]:
    """The share of an `n`-example split that this process evaluates, and the padded share size.

    Process p reads rows `[p * k, min((p + 1) * k, n))` with `k = ceil(n / process_count)`; every
    process iterates over `k` rows (padding the shorter last share) so all run the same steps.
    """
    k = -(-n // jax.process_count())
    start = min(jax.process_index() * k, n)
    return slice(start, min(start + k, n)), k


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (host or device arrays) on every device of the mesh.

    In a multi-process run every process must pass the same values (they are, when derived from
    the same seed or read from the same checkpoint).
    """
    return jax.device_put(tree, replicated(mesh))


def mesh_config(**overrides) -> ml_collections.ConfigDict:
    """`data`: devices on the data axis; -1 = every device of every process."""
    cfg = ml_collections.ConfigDict(dict(data=-1))
    cfg.update(overrides)
    return cfg


# A lost host: the others stop within about this many seconds (no heartbeat from it for this long
# marks it dead, and every process then fails naming it) instead of waiting in a collective. JAX's
# own default is 100 s; a host's heartbeats come from a background thread, not from its steps, so
# long steps do not trip it.
HEARTBEAT_TIMEOUT_SECONDS = 30
# How long a finishing process waits at the shutdown barrier for the others (JAX's default: 300).
SHUTDOWN_TIMEOUT_SECONDS = 60


def distributed_config(**overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(
        dict(
            enabled=False,
            coordinator_address="",
            num_processes=-1,
            process_id=-1,
            cpu_collectives="",
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS,
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_SECONDS,
        )
    )
    cfg.update(overrides)
    return cfg


# Placement rules for run states: (regex over the '/'-joined pytree path, PartitionSpec); the first
# match wins, anything unmatched is replicated. The pool's images are the only large batch-like
# array in a state: shard them along `data`.
STATE_RULES = (
    (r"(^|/)pool/images$", P(DATA_AXIS)),
    # A generative method's KD batches of the round: [steps, batch, H, W, C].
    (r"(^|/)synthesizer/kd_batches$", P(None, DATA_AXIS)),
)


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def state_shardings(tree: Any, mesh: Mesh, rules: tuple = STATE_RULES) -> Any:
    """The `NamedSharding` of every leaf of a state pytree, by `rules`."""

    def rule(path, _):
        name = _path_name(path)
        for pattern, spec in rules:
            if re.search(pattern, name):
                return NamedSharding(mesh, spec)
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(rule, tree)


def place_state(tree: Any, mesh: Mesh, rules: tuple = STATE_RULES) -> Any:
    """Places a state pytree on the mesh by `rules`."""
    return jax.device_put(tree, state_shardings(tree, mesh, rules))


def constrain_batch(x: jax.Array, sharding: jax.sharding.Sharding | None) -> jax.Array:
    """Inside `jit`: ask XLA to split `x` [B, ...] along `data` (None: leave it to XLA).

    Arrays created inside a jitted function (latents, targets, initial pixels) have no input
    sharding to propagate from; without the constraint XLA may compute them, and everything
    downstream, whole on every device.
    """
    if sharding is None:
        return x
    return jax.lax.with_sharding_constraint(x, sharding)


def to_host(tree: Any) -> Any:
    """Global arrays -> whole numpy arrays in every process (a collective: all must call it).

    Replicated or process-local arrays are read locally; arrays sharded over several processes
    (synthetic images, the pool) are gathered across processes first.
    """

    def get(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
            return np.asarray(jax.device_get(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)
