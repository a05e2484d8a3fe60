r"""fast10 on digits: `configs/dfkd_digits.py` with the method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_digits_fast10.py \
      --workdir=runs/dfkd_digits_fast10 --config.teacher.checkpoint=runs/teacher_digits/teacher
"""

from configs import dfkd_digits


def get_config():
    return dfkd_digits.get_config("fast10")
