r"""deepinv2k on digits: `configs/dfkd_digits.py` with the method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_digits_deepinv2k.py \
      --workdir=runs/dfkd_digits_deepinv2k --config.teacher.checkpoint=runs/teacher_digits/teacher
"""

from configs import dfkd_digits


def get_config():
    return dfkd_digits.get_config("deepinv2k")
