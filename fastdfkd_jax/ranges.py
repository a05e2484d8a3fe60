"""The valid range of every numeric config key, checked before any compute.

Each job's `validate` calls `check(config, TABLE)` first: a number outside its key's range (NaN and
infinities included) is refused with one line naming the key, the value and the range, e.g.
"kd.batch_size=0 is out of range: it must be an integer >= 1." Tuples are checked element by
element. Some keys take a special value besides their range, said in the range (`mesh.data=-1`:
every device; `synthesis.fast.reset_l0_epoch=-1`: never). Tests sweep every numeric key of every
preset against its range (tests/fastdfkd_jax/test_ranges.py), so a new numeric key needs a range
here.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

INF = math.inf


@dataclasses.dataclass(frozen=True)
class Range:
    """Values `low <= x <= high` (an end open where `*_open`), integers only where `integer`, and
    the special values `also` (e.g. -1 for "all" or "never").
    """

    low: float = -INF
    high: float = INF
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    also: tuple[float, ...] = ()

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        parts = []
        if self.low > -INF:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high < INF:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        kind = "an integer" if self.integer else "a finite number"
        text = f"{kind} {' and '.join(parts)}".rstrip()
        if self.also:
            text += " or " + " or ".join(f"{v:g}" for v in self.also)
        return text


COUNT = Range(1, integer=True)  # a positive count
SIZE_OR_ZERO = Range(0, integer=True)  # a count where 0 means none
PROBABILITY_OPEN = Range(0, 1, high_open=True)  # momentum-like coefficients in [0, 1)
NONNEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, low_open=True)  # (0, 1]
ANY = Range()


def _optimizer(prefix: str) -> dict[str, Range]:
    """The ranges of an optimizer block (`config_blocks.optimizer`) under `prefix`."""
    return {
        f"{prefix}.learning_rate": POSITIVE,
        f"{prefix}.end_learning_rate": NONNEGATIVE,
        f"{prefix}.warmup_steps": SIZE_OR_ZERO,
        f"{prefix}.momentum": PROBABILITY_OPEN,
        f"{prefix}.b1": PROBABILITY_OPEN,
        f"{prefix}.b2": PROBABILITY_OPEN,
        f"{prefix}.weight_decay": NONNEGATIVE,
        f"{prefix}.reference_batch_size": SIZE_OR_ZERO,
    }


# Keys every job has (`config_blocks.base_config`).
COMMON = {
    "seed": Range(0, integer=True),
    "eval_batch_size": COUNT,
    "mesh.data": Range(1, integer=True, also=(-1,)),  # -1: every device
    "distributed.num_processes": Range(1, integer=True, also=(-1,)),  # -1: from the cluster
    "distributed.process_id": Range(0, integer=True, also=(-1,)),  # -1: from the cluster
    "distributed.heartbeat_timeout_seconds": COUNT,
    "distributed.shutdown_timeout_seconds": COUNT,
    "checkpoint.max_to_keep": COUNT,
    "checkpoint.every_epochs": COUNT,
}

TEACHER = {
    **COMMON,
    "train.epochs": COUNT,
    "train.batch_size": COUNT,
    "train.augment.padding": SIZE_OR_ZERO,
    **_optimizer("train.optimizer"),
}

DFKD = {
    **COMMON,
    "epochs": COUNT,
    "warmup": SIZE_OR_ZERO,
    "eval_every_epochs": COUNT,
    "sample_every_epochs": SIZE_OR_ZERO,  # 0: no sample grids
    "sample_grid_size": COUNT,
    "sample_upscale": COUNT,
    "dataset.image_size": SIZE_OR_ZERO,  # 0: the dataset's own
    "pool.capacity": COUNT,
    "synthesis.batch_size": COUNT,
    "synthesis.bn": NONNEGATIVE,
    "synthesis.oh": NONNEGATIVE,
    "synthesis.adv": NONNEGATIVE,
    "synthesis.bn_momentum": PROBABILITY_OPEN,
    "synthesis.js_temperature": POSITIVE,
    "synthesis.generator.nz": COUNT,
    "synthesis.generator.ngf": COUNT,
    "synthesis.augment.padding": SIZE_OR_ZERO,
    "synthesis.augment.jitter": SIZE_OR_ZERO,
    "synthesis.augment.scale": FRACTION,
    "synthesis.fast.g_steps": COUNT,
    "synthesis.fast.lr_g": POSITIVE,
    "synthesis.fast.lr_z": NONNEGATIVE,  # 0: z fixed
    "synthesis.fast.meta_lr": NONNEGATIVE,  # 0: the meta generator does not move
    "synthesis.fast.inner_betas": PROBABILITY_OPEN,
    "synthesis.fast.meta_betas": PROBABILITY_OPEN,
    "synthesis.fast.inner_eps_root": NONNEGATIVE,
    "synthesis.fast.reptile_factor": POSITIVE,
    "synthesis.fast.reset_l0_epoch": Range(0, integer=True, also=(-1,)),  # -1: never
    "synthesis.fast.reset_std": NONNEGATIVE,
    "synthesis.fast.reset_bn_scale_mean": ANY,
    "synthesis.deepinversion.steps": COUNT,
    "synthesis.deepinversion.lr": POSITIVE,
    "synthesis.deepinversion.betas": PROBABILITY_OPEN,
    "synthesis.deepinversion.student_bn": NONNEGATIVE,
    "synthesis.generative.g_steps": COUNT,
    "synthesis.generative.lr_g": POSITIVE,
    "synthesis.generative.betas": PROBABILITY_OPEN,
    "synthesis.generative.kd_steps_per_round": COUNT,
    "synthesis.generative.act": NONNEGATIVE,
    "synthesis.generative.balance": NONNEGATIVE,
    "synthesis.nayer.g_steps": COUNT,
    "synthesis.nayer.lr_g": POSITIVE,
    "synthesis.nayer.betas": PROBABILITY_OPEN,
    "synthesis.nayer.noisy_width": COUNT,
    "synthesis.nayer.g_life": COUNT,
    "synthesis.nayer.warmup_calls": COUNT,
    "synthesis.nayer.calls": COUNT,
    "synthesis.nayer.embedding_dim": COUNT,
    "synthesis.nayer.embedding_seed": Range(0, integer=True),
    "synthesis.cmi.steps": COUNT,
    "synthesis.cmi.lr_g": POSITIVE,
    "synthesis.cmi.lr_z": NONNEGATIVE,  # 0: z fixed
    "synthesis.cmi.betas": PROBABILITY_OPEN,
    "synthesis.cmi.cr": NONNEGATIVE,
    "synthesis.cmi.temperature": POSITIVE,
    "synthesis.cmi.head_dim": COUNT,
    "synthesis.cmi.bank_size": COUNT,
    "synthesis.cmi.n_neg": COUNT,
    "synthesis.cmi.local_scale": FRACTION,
    "synthesis.meta_latent.reset_every": SIZE_OR_ZERO,  # 0: never reset
    "synthesis.meta_latent.meta_lr_z": NONNEGATIVE,
    "kd.steps": COUNT,
    "kd.batch_size": COUNT,
    "kd.temperature": POSITIVE,
    "kd.augment.padding": SIZE_OR_ZERO,
    "kd.augment.scale": FRACTION,
    "kd.at_weight": NONNEGATIVE,
    **_optimizer("kd.optimizer"),
    "mars_head.seeds": COUNT,
    "mars_head.max_terms": SIZE_OR_ZERO,  # 0: earth's default
    "mars_head.thresh": NONNEGATIVE,
    "mars_head.epochs": COUNT,
    "mars_head.lr_factor": POSITIVE,
}

BENCHMARK = {
    "seeds": Range(0, integer=True),
    "timing_repeats": COUNT,
    "timing_chunks": COUNT,
    "short_epochs": COUNT,
    "short_steps": SIZE_OR_ZERO,  # 0: the method's own steps
    "cost_g_steps": COUNT,
    "teacher.train_epochs": SIZE_OR_ZERO,  # 0: the teacher config's
    # The `run` block overrides the methods' distillation configs: their ranges.
    **{f"run.{key}": r for key, r in DFKD.items()},
}


def _numeric_leaves(config: Mapping[str, Any], prefix: str = ""):
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _numeric_leaves(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            for i, element in enumerate(value):
                if isinstance(element, (int, float)) and not isinstance(element, bool):
                    yield name, f"{name}[{i}]", element
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, name, value


def numeric_keys(config: Mapping[str, Any]) -> set[str]:
    """The dotted keys of `config` (a dict) that hold a number or a tuple of numbers."""
    return {key for key, _, _ in _numeric_leaves(config)}


def check(config: Any, table: Mapping[str, Range]) -> None:
    """Raises a ValueError naming the first numeric key of `config` outside its range in `table`
    (keys without a range are not checked; tests keep every preset's numeric keys declared).
    """
    config = config.to_dict() if hasattr(config, "to_dict") else config
    for key, shown, value in _numeric_leaves(config):
        allowed = table.get(key)
        if allowed is not None and not allowed.allows(value):
            raise ValueError(f"{shown}={value!r} is out of range: it must be {allowed.describe()}.")
