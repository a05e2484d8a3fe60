"""fastdfkd-jax: fast data-free knowledge distillation (FastDFKD) in JAX/Flax.

Subpackages: `data` (datasets and augmentation), `models` (the model zoo and generators),
`synthesis` (losses, DeepInversion, the FastDFKD meta-synthesizer, the memory pool, the method
registry), `benchmark` (the acceleration benchmark). Jobs: `teacher` (teacher training), `train`
(data-free distillation). Entry point: `fastdfkd --config=configs/<job>_<dataset>.py[:VARIANT]
--workdir=DIR` (or `python -m fastdfkd_jax.main ...`); docs/CONVENTIONS.md maps the modules.
"""

__version__ = "0.1.0"
