"""Blocks shared by every config: mesh, multi-host, checkpointing, run-level keys."""

import ml_collections

from fastdfkd_jax import optim, sharding


def base_config(job: str) -> ml_collections.ConfigDict:
    """The keys every run has; a config adds its job's blocks."""
    config = ml_collections.ConfigDict()
    config.job = job
    config.seed = 0
    config.progress_bar = True
    config.eval_batch_size = 500
    config.mesh = sharding.mesh_config()
    config.distributed = sharding.distributed_config()
    config.checkpoint = ml_collections.ConfigDict(dict(max_to_keep=2, every_epochs=1))
    return config


def optimizer(**overrides) -> ml_collections.ConfigDict:
    return optim.optimizer_config(**overrides)


def dataset(name: str) -> ml_collections.ConfigDict:
    # data_dir '' means the default: $FASTDFKD_DATA_DIR or TFDS's default directory.
    return ml_collections.ConfigDict(dict(name=name, data_dir=""))
