"""The class label embeddings NAYER's generator starts from: a (C, D) table, one row per class.

NAYER embeds each class name with CLIP's text encoder ("a image of {class}", 512 values). No text
encoder can be had offline, so a run takes its table from one of:

- a path to a `.npy` file of shape (C, D) (`scripts/nayer_embeddings.py` makes one from NAYER's own
  pickled tables, or with a text encoder where one is installed);
- `'onehot'`: the C x C identity (D = C), the default where no file is given (measured best of the
  two built-in tables on digits: docs/benchmarks.md);
- `'random'`: a fixed Gaussian table, N(0, 1) of `dim` values per class drawn from `seed` (the same
  table in every run with that seed).

The generator normalizes the rows with a BatchNorm over the batch first, so only their directions
and spread across classes matter, not their scale.
"""

import io
import os
import pickle

import numpy as np

RANDOM, ONEHOT = "random", "onehot"
BUILT_IN = (RANDOM, ONEHOT)
# NAYER's prompt (its label_embedding.py): "a image of" before every class name.
PROMPT = "a image of {}"
# What a pickled torch tensor may name: the functions that rebuild it, nothing else.
TENSOR_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("collections", "OrderedDict"),
}


def load(source: str, num_classes: int, dim: int, seed: int) -> np.ndarray:
    """The (C, D) float32 table of `source` ('random', 'onehot' or a `.npy` path) for C classes.

    Raises:
      ValueError: a file that is missing, not 2-D, or has another number of rows than classes
        (one line naming the file and both numbers).

    """
    if source == RANDOM:
        return np.random.default_rng(seed).standard_normal((num_classes, dim)).astype(np.float32)
    if source == ONEHOT:
        return np.eye(num_classes, dtype=np.float32)
    check_file(source, num_classes)
    return np.asarray(np.load(source, allow_pickle=False), np.float32)


def check_file(path: str, num_classes: int) -> None:
    """Checks a `.npy` table's existence and shape without loading its values."""
    if not os.path.isfile(path):
        raise ValueError(
            f"synthesis.nayer.embeddings={path!r} is neither {' nor '.join(map(repr, BUILT_IN))} "
            "nor an existing .npy file."
        )
    shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    if len(shape) != 2 or shape[0] != num_classes:
        raise ValueError(
            f"synthesis.nayer.embeddings={path!r} has shape {shape}; it needs one row per class: "
            f"({num_classes}, D)."
        )


def prompt(name: str) -> str:
    """NAYER's prompt for a class name (underscores and hyphens as spaces)."""
    return PROMPT.format(name.strip().replace("_", " ").replace("-", " "))


class TensorUnpickler(pickle.Unpickler):
    """Unpickles a torch tensor and refuses every other global (a pickle can name any function,
    and loading it runs that function). Needs the `torch` extra.
    """

    def find_class(self, module, name):
        import torch  # the `torch` extra, only for this

        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_storage
        if (module, name) in TENSOR_REBUILDERS:
            return super().find_class(module, name)
        if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: not part of a tensor")


def _load_storage(data: bytes):
    """A tensor's storage from its serialized bytes, onto the CPU, by torch's safe loader."""
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def from_nayer_pickle(path: str) -> np.ndarray:
    """NAYER's pickled (C, D) label-embedding tensor (`label_embedding/<dataset>_le.pickle`, an
    fp16 tensor stored on a GPU) as float32, without running any code but torch's rebuilders.
    """
    with open(path, "rb") as f:
        tensor = TensorUnpickler(f).load()
    return tensor.detach().float().cpu().numpy()
