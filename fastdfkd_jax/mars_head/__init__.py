"""The MARS head of a distilled student: the job `mars_head` (`validate`, `run`).

After data-free distillation, the student's last Dense layer is replaced by a head fit on its
pooled features of the pool's synthetic images against the teacher's logits (MARS converted
exactly into a ReLU MLP, or the baselines: the student's own head, a least-squares linear refit,
random ReLU features), then fine-tuned by KD on the pool. `heads` cuts a classifier into body and
head and builds the heads; `fit` is the registry of compared heads; `finetune` the KD fine-tuning;
`job` the phase (resumable, outputs in `WORKDIR/mars_head/`).
"""

from fastdfkd_jax.mars_head.job import run, validate

__all__ = ["run", "validate"]
