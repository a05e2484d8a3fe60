r"""What a GPU/TPU machine needs from here to run the benchmark: the wheels its Python lacks.

  python scripts/gpu_bundle.py prepare [--dir=gpu_bundle] [--python_version=3.12]
      # here (PyPI reachable): wheels of the pure-Python packages the project needs beyond a
      # CUDA/TPU jax stack, for that Python, into DIR/wheels (DIR is git-ignored: carry it)
  python scripts/gpu_bundle.py install --dir=gpu_bundle --target=SITE
      # there: installs (no dependencies resolved, nothing upgraded) each wheel whose top-level
      # modules that Python cannot import yet, into SITE (put SITE on PYTHONPATH)

The machine's own jax, jaxlib, numpy, scipy and CUDA libraries are never replaced: a wheel is
installed only where none of its modules is importable there.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import zipfile

# What the benchmark imports beyond what an accelerator image's Python usually has (jax, flax,
# optax, orbax-checkpoint, chex, numpy, scipy, scikit-learn, pillow, absl, tqdm, matplotlib).
PACKAGES = ("ml-collections", "PyYAML", "tensorboardX", "etils", "importlib_resources", "zipp")


def prepare(directory: str, python_version: str) -> None:
    wheels = os.path.join(directory, "wheels")
    os.makedirs(wheels, exist_ok=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            f"--python-version={python_version}", "--platform=manylinux2014_x86_64",
            "--platform=manylinux_2_17_x86_64", "--platform=any", "-d", wheels, *PACKAGES,
        ],
        check=True,
    )  # fmt: skip


def top_level_modules(wheel: str) -> list[str]:
    """The importable top-level names a wheel provides (top_level.txt, else its folders)."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        listed = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        if listed:
            return [m for m in z.read(listed[0]).decode().split() if m]
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    return sorted(t[:-3] if t.endswith(".py") else t for t in tops)


def install(directory: str, target: str) -> None:
    wheels = os.path.join(directory, "wheels")
    os.makedirs(target, exist_ok=True)
    sys.path.insert(0, target)
    for name in sorted(os.listdir(wheels)):
        wheel = os.path.join(wheels, name)
        modules = top_level_modules(wheel)
        present = [m for m in modules if importlib.util.find_spec(m) is not None]
        if present:
            print(f"{name}: already importable ({', '.join(present)}), kept as it is")
            continue
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel],
            check=True,
        )
        print(f"{name}: installed into {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("prepare", "install"))
    parser.add_argument("--dir", default="gpu_bundle")
    parser.add_argument("--python_version", default="3.12")
    parser.add_argument("--target", default="")
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.dir, args.python_version)
    else:
        if not args.target:
            parser.error("install needs --target")
        install(args.dir, args.target)


if __name__ == "__main__":
    main()
