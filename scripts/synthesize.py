r"""Writes synthetic images from a teacher: calibration or pruning data without the training data.

    python scripts/synthesize.py --teacher=results/teachers/digits --num_images=512 \
        --out=/tmp/synthetic.npz
    python scripts/synthesize.py --teacher=results/teachers/digits --num_images=100 \
        --method=deepinv2k --config=configs/dfkd_digits.py --out=/tmp/synthetic_png

`--out` ending in `.npz` gets `images` float32 [N, H, W, C] in [0, 1], the teacher's `labels` [N],
`probabilities` [N, K] and, for a method with per-image targets, the `targets` [N] it aimed at;
any other path becomes a folder of PNGs, one subfolder per teacher class (`<class>/<index>.png`),
with `labels.csv` (and its `target` column). It prints the counts per class, the mean
confidence and how many images the teacher assigns to their targets. The teacher is a model
directory (trained by the teacher job, distilled by a run, or imported); `--dataset` (default:
the one it was trained on) gives the image shape, classes and normalization.
`fastdfkd_jax.api.synthesize` does the same from Python, for any linen or NNX teacher.
"""

import os

import numpy as np
from absl import app, flags
from PIL import Image

from fastdfkd_jax import api, checkpoint

_TEACHER = flags.DEFINE_string("teacher", None, "Model directory of the teacher.", required=True)
_NUM_IMAGES = flags.DEFINE_integer("num_images", None, "How many images.", required=True)
_OUT = flags.DEFINE_string("out", None, "A .npz file, or a folder for PNGs.", required=True)
_METHOD = flags.DEFINE_string(
    "method", None, "A named method (fastdfkd --list_methods); default: the config's, else fast5."
)
_CONFIG = flags.DEFINE_string(
    "config", None, "A distillation config file 'path.py[:arg]' (default: the library's)."
)
_DATASET = flags.DEFINE_string("dataset", None, "Dataset name (default: the teacher's).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthesis.")
_WARMUP = flags.DEFINE_integer("warmup_calls", 0, "Synthesis calls made and discarded first.")

# PNG pixel levels.
_LEVELS = 255


def write_npz(path: str, synthetic: api.Synthetic) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = dict(
        images=synthetic.images, labels=synthetic.labels, probabilities=synthetic.probabilities
    )
    if synthetic.targets is not None:
        arrays["targets"] = synthetic.targets
    np.savez(path, **arrays)


def write_folder(folder: str, synthetic: api.Synthetic) -> None:
    targets = synthetic.targets
    rows = ["file,label,probability" + ("" if targets is None else ",target")]
    for i, (image, label) in enumerate(zip(synthetic.images, synthetic.labels, strict=True)):
        name = os.path.join(str(label), f"{i:06d}.png")
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        pixels = np.round(np.clip(image, 0.0, 1.0) * _LEVELS).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
            os.path.join(folder, name)
        )
        target = "" if targets is None else f",{targets[i]}"
        rows.append(f"{name},{label},{synthetic.probabilities[i, label]:.6f}{target}")
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    dataset = _DATASET.value or checkpoint.load_teacher_meta(_TEACHER.value)["dataset"]
    synthetic = api.synthesize(
        _TEACHER.value,
        _NUM_IMAGES.value,
        data=dataset,
        method=_METHOD.value,
        config=_CONFIG.value,
        seed=_SEED.value,
        warmup_calls=_WARMUP.value,
    )
    if _OUT.value.endswith(".npz"):
        write_npz(_OUT.value, synthetic)
    else:
        write_folder(_OUT.value, synthetic)
    print(f"{len(synthetic.labels)} images to {_OUT.value}; {describe(synthetic)}")


def describe(synthetic: api.Synthetic) -> str:
    """One line: the images per teacher class, the mean confidence, the share on target."""
    counts = np.bincount(synthetic.labels, minlength=synthetic.probabilities.shape[-1])
    line = (
        f"per teacher class: {counts.tolist()}; "
        f"mean confidence {synthetic.probabilities.max(-1).mean():.3f}"
    )
    if synthetic.targets is not None:
        on_target = np.mean(synthetic.labels == synthetic.targets)
        line += f"; the teacher's class is the target for {100 * on_target:.1f}%"
    return line


if __name__ == "__main__":
    app.run(main)
