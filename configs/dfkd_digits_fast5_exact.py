r"""fast5_exact on digits: `configs/dfkd_digits.py` with the method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_digits_fast5_exact.py \
      --workdir=runs/dfkd_digits_fast5_exact --config.teacher.checkpoint=runs/teacher_digits/teacher
"""

from configs import dfkd_digits


def get_config():
    return dfkd_digits.get_config("fast5_exact")
