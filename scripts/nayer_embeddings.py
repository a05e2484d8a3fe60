r"""NAYER's label embeddings as a (C, D) float32 `.npy` file (`synthesis.nayer.embeddings`).

From NAYER's own pickled tables (the repository's `label_embedding/<dataset>_le.pickle`, a pickled
fp16 torch tensor stored on a GPU), without running arbitrary code: the pickle is read by an
unpickler that admits only the torch functions that rebuild a tensor, and the tensor's storage by
`torch.load(..., weights_only=True)` onto the CPU (needs the `torch` extra):

  python scripts/nayer_embeddings.py --pickle=label_embedding/cifar10_le.pickle \
      --out=cifar10_le.npy

Or computed with a CLIP text encoder where one is installed (`open_clip_torch`; none can be
installed on the offline development machines), from a file of class names, one per line, with
NAYER's prompt "a image of {name}" (underscores and hyphens as spaces):

  python scripts/nayer_embeddings.py --labels=cifar10_label.txt --out=cifar10_le.npy

Then `--config.synthesis.nayer.embeddings=cifar10_le.npy`. Without a file, runs use a fixed random
table (`fastdfkd_jax/synthesis/label_embeddings.py`).
"""

import numpy as np
from absl import app, flags

from fastdfkd_jax.synthesis.label_embeddings import from_nayer_pickle, prompt

_PICKLE = flags.DEFINE_string("pickle", "", "NAYER's pickled label-embedding tensor.")
_LABELS = flags.DEFINE_string("labels", "", "Class names, one per line (to encode with CLIP).")
_OUT = flags.DEFINE_string("out", "", "Where to write the (C, D) float32 .npy file.")
_MODEL = flags.DEFINE_string("clip_model", "ViT-B-32", "The open_clip model (NAYER: ViT-B/32).")
_PRETRAINED = flags.DEFINE_string("clip_weights", "openai", "The open_clip weights.")


def from_clip(labels_path: str, model: str, weights: str) -> np.ndarray:
    """The CLIP text embeddings (unnormalized, as NAYER's) of the classes in `labels_path`."""
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise SystemExit(
            f"Computing embeddings needs a CLIP text encoder (pip install open_clip_torch): {error}"
        ) from None
    with open(labels_path) as f:
        names = [line for line in f.read().splitlines() if line.strip()]
    clip, _, _ = open_clip.create_model_and_transforms(model, pretrained=weights)
    tokens = open_clip.get_tokenizer(model)([prompt(n) for n in names])
    with torch.no_grad():
        return clip.encode_text(tokens).float().numpy()


def main(argv):
    del argv
    if bool(_PICKLE.value) == bool(_LABELS.value) or not _OUT.value:
        raise app.UsageError("Give --out and one of --pickle or --labels.")
    if _PICKLE.value:
        table = from_nayer_pickle(_PICKLE.value)
    else:
        table = from_clip(_LABELS.value, _MODEL.value, _PRETRAINED.value)
    np.save(_OUT.value, table.astype(np.float32))
    print(f"Wrote {_OUT.value}: {table.shape[0]} classes x {table.shape[1]} values.")


if __name__ == "__main__":
    app.run(main)
