"""`WrapsFast`: the mixin of synthesizers built around a FastDFKD one (meta-latent, NAYER)."""

from fastdfkd_jax.synthesis.base import PoolSynthesis
from fastdfkd_jax.synthesis.fastdfkd import FastSynthesizer
from fastdfkd_jax.synthesis.objective import Objective


class WrapsFast(PoolSynthesis):
    """A synthesizer built around a `FastSynthesizer` `base` (its inner loop, objective and step
    settings): what the trainer and `PoolSynthesis` read of a synthesizer, taken from the base.
    Mixed into the meta-latent and NAYER synthesizers' dataclasses.
    """

    base: FastSynthesizer

    @property
    def objective(self) -> Objective:
        return self.base.objective

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    @property
    def adv(self) -> float:
        return self.base.adv

    @property
    def adv_start_epoch(self) -> int:
        return self.base.adv_start_epoch
