"""fastdfkd-jax: fast data-free knowledge distillation (FastDFKD) in JAX/Flax.

Subpackages: `data` (datasets and augmentation), `models` (the model zoo and generators),
`synthesis` (losses, DeepInversion, the FastDFKD meta-synthesizer, the memory pool). Entry point:
`python -m fastdfkd_jax.main --config=configs/<name>.py --workdir=DIR`.
"""

__version__ = "0.1.0"
