"""Every preset of configs/ is pinned: its config dict hashes to the value recorded in
config_hashes.json, so a change to a published setting (a figure's command) cannot go unnoticed.

The hashes were recorded when the configs moved to one file per data set and job; the old files
gave the same dicts for all of them (checked once, preset by preset). After a deliberate change,
rewrite the file with `python -m tests.fastdfkd_jax.test_configs` and say in the commit which
presets changed and why.
"""

import hashlib
import importlib.util
import json
import os
import sys

from fastdfkd_jax import config_blocks, methods
from fastdfkd_jax.benchmark import configs as bench_configs
from tests.conftest import CONFIGS, REPO, load_config

HASHES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_hashes.json")
METHODS = tuple(methods.METHODS)
PAIRS = tuple(config_blocks.CIFAR_PAIRS)


def config_module(name: str):
    """The config file `configs/<name>` as a module (for its variant lists)."""
    path = os.path.join(CONFIGS, name)
    spec = importlib.util.spec_from_file_location("_preset_" + name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IMAGENET, NYUV2 = config_module("dfkd_imagenet.py"), config_module("dfkd_nyuv2.py")


def presets() -> list[str]:
    """Every config spec (`file:arg`) of the distillation, teacher and benchmark presets."""
    specs = [f"dfkd_{d}.py:{m}" for d in ("digits", "fashion_mnist") for m in METHODS]
    specs += [f"dfkd_cifar.py:{d},{m},{p}" for d in ("cifar10", "cifar100") for m in METHODS
              for p in PAIRS]  # fmt: skip
    specs += [f"dfkd_imagenet.py:{p},{m}{r}" for p in IMAGENET.PAIRS for m in IMAGENET.METHODS
              for r in ("", ",runlocal")]  # fmt: skip
    specs += [f"dfkd_nyuv2.py:{m}{r}" for m in NYUV2.METHODS for r in ("", ",runlocal")]
    specs += ["teacher_digits.py", "teacher_fashion_mnist.py"]
    specs += [f"teacher_cifar.py:{d},{a}" for d in ("cifar10", "cifar100")
              for a in ("resnet34", "vgg11_bn", "wrn40_2")]  # fmt: skip
    specs += ["bench_digits.py", "bench_digits.py:quick"]
    specs += ["bench_fashion_mnist.py", "bench_fashion_mnist.py:quick"]
    specs += [f"bench_cifar.py:{d},{p}" for d in ("cifar10", "cifar100") for p in PAIRS]
    specs += [f"bench_cifar.py:{d},runlocal" for d in ("cifar10", "cifar100")]
    return specs


def digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, default=list, sort_keys=True).encode()).hexdigest()


def current() -> dict[str, str]:
    """spec -> hash; a benchmark preset also hashes each method's run config (`spec/method`)."""
    out = {}
    for spec in presets():
        config = load_config(spec)
        if config.job == "benchmark":
            for method in config.methods:
                run = bench_configs.method_config(config, method)
                out[f"{spec}/{method}"] = digest(run.to_dict())
            config = config.to_dict()
            # Paths depend on where the repository is: only their file names count.
            config["dfkd_config"] = os.path.basename(config["dfkd_config"])
            config["teacher"]["train_config"] = os.path.basename(config["teacher"]["train_config"])
            for block, key in (("teacher", "checkpoint"), (None, "results_dir")):
                holder = config[block] if block else config
                if holder[key]:
                    holder[key] = os.path.relpath(holder[key], REPO)
        else:
            config = config.to_dict()
        out[spec] = digest(config)
    return out


def test_every_preset_is_unchanged():
    with open(HASHES) as f:
        recorded = json.load(f)
    got = current()
    assert sorted(got) == sorted(recorded)
    changed = [spec for spec in got if got[spec] != recorded[spec]]
    assert not changed, f"These presets changed: {changed}"


if __name__ == "__main__":
    with open(HASHES, "w") as f:
        json.dump(current(), f, indent=1, sort_keys=True)
        f.write("\n")
    sys.stdout.write(f"Wrote {HASHES}\n")
