"""Placement: the device mesh, sharding rules, global batches, multi-host initialization.

Every jitted step of the project runs over one `jax.sharding.Mesh` with a `data` axis. Batches (real
images, synthetic images, latents, targets, the memory pool) are split along their leading axis over
`data`; model and optimizer states are replicated. Because `jax.jit` computes with global arrays,
reductions over the batch (BatchNorm statistics, means of losses) are over the global batch, so a
sharded run is the same computation as a single-device run.
"""

import re

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
    """Starts `jax.distributed` when the config (or a TPU pod environment) asks for it.

    Args:
      cfg: the `distributed` block: `enabled` (bool), `coordinator_address` ('' = auto-detect, as on
        Cloud TPU), `num_processes` and `process_id` (-1 = auto-detect), `cpu_collectives`
        ('' or 'gloo', for multi-process CPU runs).

    """
    if not cfg.enabled:
        return
    if jax.distributed.is_initialized():
        return
    if cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    kwargs = {}
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


def make_mesh(cfg: ml_collections.ConfigDict) -> Mesh:
    """A 1-D mesh over `cfg.data` devices (-1: all devices), axis name `data`."""
    available = jax.device_count()
    size = available if cfg.data == -1 else cfg.data
    if size < 1:
        raise ValueError(f"mesh.data must be -1 or >= 1, got {cfg.data}.")
    if size > available:
        raise ValueError(f"mesh.data={size} asks for more devices than the {available} present.")
    devices = np.asarray(jax.devices()[:size])
    return Mesh(devices, (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The whole array on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_batch_divides(global_batch: int, mesh: Mesh, name: str) -> None:
    """Raises a ValueError naming both numbers when the batch does not split evenly."""
    n = mesh.shape[DATA_AXIS]
    if global_batch % n:
        raise ValueError(
            f"{name}={global_batch} does not divide by the data axis size {n}; "
            f"choose a multiple of {n}."
        )


def local_slice(global_batch: int) -> slice:
    """The rows of a global batch that this process feeds (all of them on one host)."""
    per_process = global_batch // jax.process_count()
    start = jax.process_index() * per_process
    return slice(start, start + per_process)


def put_batch(batch, mesh: Mesh):
    """Host arrays of the *global* batch -> global arrays sharded along `data`.

    Every process passes the same global batch (it is cheap on the host: a batch of indices and the
    rows they select); each keeps only its own rows, so this works single- and multi-host.
    """
    sharding = batch_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        local = x[local_slice(x.shape[0])]
        return jax.make_array_from_process_local_data(sharding, local, x.shape)

    return jax.tree.map(put, batch)


def replicate(tree, mesh: Mesh):
    """Places a pytree (host or device arrays) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def mesh_config(**overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(dict(data=-1))
    cfg.update(overrides)
    return cfg


def distributed_config(**overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(
        dict(
            enabled=False,
            coordinator_address="",
            num_processes=-1,
            process_id=-1,
            cpu_collectives="",
        )
    )
    cfg.update(overrides)
    return cfg


# Placement rules for run states: (regex over the '/'-joined pytree path, PartitionSpec); the first
# match wins, anything unmatched is replicated. The pool's images are the only large batch-like
# array in a state: shard them along `data`.
STATE_RULES = ((r"(^|/)pool/images$", P(DATA_AXIS)),)


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def state_shardings(tree, mesh: Mesh, rules=STATE_RULES):
    """The `NamedSharding` of every leaf of a state pytree, by `rules`."""

    def rule(path, _):
        name = _path_name(path)
        for pattern, spec in rules:
            if re.search(pattern, name):
                return NamedSharding(mesh, spec)
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(rule, tree)


def place_state(tree, mesh: Mesh, rules=STATE_RULES):
    """Places a state pytree on the mesh by `rules`."""
    return jax.device_put(tree, state_shardings(tree, mesh, rules))
