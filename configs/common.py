"""Blocks shared by every config: mesh, multi-host, checkpointing, run-level keys.

Batch sizes in every config (`train.batch_size`, `synthesis.batch_size`, `kd.batch_size`,
`eval_batch_size`) are GLOBAL: summed over all devices of all processes. Each device computes
`batch_size / mesh.data` rows (`mesh.data = -1`: every device), which must divide evenly. Learning
rates are for that global batch; an optimizer block's `lr_scaling` ('none' | 'linear' against
`reference_batch_size`) says whether they change when the global batch does (docs/scaling.md).
"""

import ml_collections

from fastdfkd_jax import optim, sharding


def base_config(job: str) -> ml_collections.ConfigDict:
    """The keys every run has; a config adds its job's blocks."""
    config = ml_collections.ConfigDict()
    config.job = job
    config.seed = 0
    config.progress_bar = True
    config.eval_batch_size = 500  # global, like every batch size
    config.mesh = sharding.mesh_config()  # data=-1: one `data` axis over every device
    config.distributed = sharding.distributed_config()
    config.checkpoint = ml_collections.ConfigDict(dict(max_to_keep=2, every_epochs=1))
    return config


def optimizer(**overrides) -> ml_collections.ConfigDict:
    """An optimizer block; its learning rates are for the job's global batch.

    `lr_scaling='none'` (the default: the rate is used as given, whatever the batch) or 'linear'
    (rates multiplied by `global_batch / reference_batch_size`; see
    `sharding.scale_learning_rate`).
    """
    cfg = optim.optimizer_config()
    cfg.lr_scaling = "none"
    cfg.reference_batch_size = 0
    cfg.update(overrides)
    return cfg


def dataset(name: str) -> ml_collections.ConfigDict:
    # data_dir '' means the default: $FASTDFKD_DATA_DIR or TFDS's default directory.
    return ml_collections.ConfigDict(dict(name=name, data_dir=""))
