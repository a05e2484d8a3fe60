r"""fast2 on fashion_mnist: `configs/dfkd_fashion_mnist.py` with the method fixed.

  python -m fastdfkd_jax.main --config=configs/dfkd_fashion_mnist_fast2.py \
      --workdir=runs/dfkd_fashion_mnist_fast2 --config.teacher.checkpoint=runs/teacher_fashion_mnist/teacher
"""

from configs import dfkd_fashion_mnist


def get_config():
    return dfkd_fashion_mnist.get_config("fast2")
