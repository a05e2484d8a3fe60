"""Import a PyTorch teacher (the original FastDFKD code's or torchvision's) as a teacher directory.

Usage:
  # A CIFAR teacher of the original code:
  python scripts/import_torch_teacher.py --arch=wrn40_2 --num_classes=10 \
      --pth=checkpoints/pretrained/cifar10_wrn40_2.pth --out=teachers/cifar10_wrn40_2
  # torchvision's ImageNet ResNet-50 (e.g. resnet50-0676ba61.pth from torchvision's model zoo):
  python scripts/import_torch_teacher.py --arch=resnet50_imagenet --num_classes=1000 \
      --dataset=imagenet2012 --pth=resnet50-0676ba61.pth --out=teachers/imagenet_resnet50
  # A NYUv2 DeepLabV3 of the original code (or torchvision's layout):
  python scripts/import_torch_teacher.py --arch=deeplabv3_resnet50 --num_classes=13 \
      --dataset=nyuv2 --pth=nyuv2_deeplabv3_resnet50.pth --out=teachers/nyuv2_deeplabv3_resnet50

The ``.pth`` may be a bare state dict or the original's ``{'state_dict': ...}`` checkpoint, with or
without ``nn.DataParallel``'s ``module.`` prefix. The dataset defaults to the file-name prefix of
the original's ``{dataset}_{arch}.pth`` naming, the image shape to the dataset's registered one
(32,32,3 for an unregistered dataset). Needs the ``torch`` extra (``pip install -e .[torch]``).
"""

import os
import sys

from absl import app, flags, logging

_ARCH = flags.DEFINE_string(
    "arch", None, "Zoo model name, e.g. resnet34, wrn40_2, resnet50_imagenet, deeplabv3_resnet50."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Number of classes of the teacher.")
_PTH = flags.DEFINE_string("pth", None, "PyTorch checkpoint (.pth) to import.")
_OUT = flags.DEFINE_string("out", None, "Teacher directory to write.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset name for meta.json; default: the .pth name's prefix before '_'."
)
_IMAGE_SHAPE = flags.DEFINE_list(
    "image_shape",
    None,
    "H,W,C of the teacher's inputs (for meta.json); default: the dataset's registered shape, "
    "else 32,32,3.",
)
# For datasets the registry does not know (the original code's CIFAR-shaped ones).
_FALLBACK_IMAGE_SHAPE = (32, 32, 3)
_TRUST_PICKLE = flags.DEFINE_bool(
    "trust_pickle",
    False,
    "Load the .pth with weights_only=False (runs pickled code; only for files you trust).",
)

# nn.DataParallel prefixes every key with this.
_DATA_PARALLEL_PREFIX = "module."


def load_state_dict(pth: str, *, trust_pickle: bool = False) -> dict:
    """Read a .pth with torch and return its state dict as ``{key: float32 numpy array}``."""
    try:
        import torch
    except ImportError:
        sys.exit(
            "Importing a PyTorch teacher needs torch: pip install torch==2.13.0 "
            "(or the project's extra: pip install -e .[torch])."
        )
    checkpoint = torch.load(pth, map_location="cpu", weights_only=not trust_pickle)
    state_dict = checkpoint.get("state_dict", checkpoint)
    if state_dict and all(k.startswith(_DATA_PARALLEL_PREFIX) for k in state_dict):
        state_dict = {k[len(_DATA_PARALLEL_PREFIX) :]: v for k, v in state_dict.items()}
    return {k: v.detach().cpu().float().numpy() for k, v in state_dict.items()}


def main(argv):
    del argv
    # Imported here so that `--help` works without JAX start-up cost.
    from fastdfkd_jax import data
    from fastdfkd_jax.checkpoint import save_teacher
    from fastdfkd_jax.models.torch_import import convert_state_dict

    dataset = _DATASET.value or os.path.basename(_PTH.value).split("_")[0]
    if _IMAGE_SHAPE.value is not None:
        image_shape = tuple(int(s) for s in _IMAGE_SHAPE.value)
    elif dataset in data.DATASETS:
        image_shape = data.get_info(dataset).image_shape
    else:
        image_shape = _FALLBACK_IMAGE_SHAPE
    if len(image_shape) != 3:
        raise ValueError(f"--image_shape must be H,W,C, got {_IMAGE_SHAPE.value}")
    state_dict = load_state_dict(_PTH.value, trust_pickle=_TRUST_PICKLE.value)
    variables = convert_state_dict(
        _ARCH.value, _NUM_CLASSES.value, state_dict, image_shape=image_shape
    )
    save_teacher(
        _OUT.value,
        variables,
        arch=_ARCH.value,
        num_classes=_NUM_CLASSES.value,
        dataset=dataset,
        image_shape=image_shape,
    )
    logging.info("Wrote %s teacher (%s, %s) to %s", _ARCH.value, dataset, image_shape, _OUT.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["arch", "num_classes", "pth", "out"])
    app.run(main)
