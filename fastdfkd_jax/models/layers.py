"""Building blocks shared by the model zoo.

Every convolution pads explicitly (``((p, p), (p, p))``) rather than with ``'SAME'``: for a stride-2
3x3 convolution on an even input, ``'SAME'`` pads (0, 1) while PyTorch pads (1, 1), and imported
PyTorch teachers must compute exactly what they computed in PyTorch.

Every normalization is a plain :class:`flax.linen.BatchNorm` with PyTorch's defaults
(``momentum=0.9`` in Flax's convention equals PyTorch's ``momentum=0.1``; ``epsilon=1e-5``), so
``nn.intercept_methods`` can capture its input and imported running statistics behave the same.

Every layer takes the model's ``dtype``: the dtype of its computation (None, Flax's default: that
of its inputs and parameters, float32; bfloat16 under the ``bfloat16`` precision policy, see
:mod:`fastdfkd_jax.precision`). Parameters stay float32 (Flax's ``param_dtype`` default) and
BatchNorm statistics are reduced in float32.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm2d defaults, in Flax's convention (see the module docstring).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# He initialization as used by the original wide ResNets and VGG
# (``normal(0, sqrt(2 / (k * k * out_channels)))``, i.e. fan-out; JAX's "normal" is not truncated).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default for Conv2d / Linear weights: ``kaiming_uniform_(a=sqrt(5))``, which is a uniform
# distribution with variance 1 / (3 * fan_in).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's Linear and Conv bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as a Flax
    initializer (`fan_in`: the layer's inputs per output, in_features or in_channels * k * k).
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def batch_norm(*, train: bool, name: str | None = None, dtype: Any = None) -> nn.BatchNorm:
    """Return a BatchNorm over the channels of an NHWC or [N, C] input, with PyTorch's defaults.

    Args:
      train: use batch statistics and update the running ones (True) or use the running ones.
      name: submodule name (chosen to mirror the PyTorch state-dict key).
      dtype: the dtype of its output (None: its input's; statistics are reduced in float32).

    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        name=name,
    )


def conv(
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    kernel_init=kaiming_fan_out,
    bias_init=nn.initializers.zeros,
    dtype: Any = None,
    name: str | None = None,
) -> nn.Conv:
    """Return a square convolution with PyTorch-style symmetric padding.

    Args:
      features: output channels.
      kernel_size: side of the square kernel.
      stride: spatial stride.
      padding: zeros added on each side; ``dilation * (kernel_size // 2)`` when None (keeps the
        size at stride 1, as torchvision's dilated convolutions).
      dilation: spacing of the kernel taps (atrous convolution).
      groups: channel groups (``groups == features == input channels`` is a depthwise conv); the
        kernel is ``[k, k, in / groups, features]``, as PyTorch's ``[features, in / groups, k, k]``.
      use_bias: add a bias (off when a BatchNorm follows).
      kernel_init: weight initializer, ``(key, shape, dtype)`` protocol.
      bias_init: the bias's initializer (with ``use_bias``), e.g. ``torch_bias_init(fan_in)``.
      dtype: the computation dtype (None: the input's and kernel's; the kernel stays float32
        and is cast).
      name: submodule name (chosen to mirror the PyTorch state-dict key).

    """
    pad = dilation * (kernel_size // 2) if padding is None else padding
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        name=name,
    )


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BN -> activation, children ``conv`` and ``bn`` (PyTorch ``.0``, ``.1``).

    Attributes:
      features: output channels.
      kernel_size: square kernel side.
      stride: convolution stride.
      dilation: convolution dilation.
      groups: channel groups (``features``: depthwise).
      padding: zeros per side; ``dilation * (kernel_size // 2)`` when None.
      activation: applied after the BN (``nn.relu``, ``nn.relu6``, ...).
      kernel_init: convolution weight initializer.
      dtype: the computation dtype (None: that of the inputs and parameters).

    """

    features: int
    kernel_size: int = 1
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    padding: int | None = None
    activation: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
    kernel_init: nn.initializers.Initializer = kaiming_fan_out
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """``[N, H, W, C_in] -> [N, H', W', features]``."""
        x = conv(
            self.features,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="conv",
        )(x)
        return self.activation(batch_norm(train=train, name="bn", dtype=self.dtype)(x))


def _windows_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """``[N, H, W, C] -> [N, H // 2, 2, W // 2, 2, C]``: the 2x2 windows as two axes of size 2
    (odd last rows and columns dropped, as torch's floor).
    """
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """Max-pool 2x2 with stride 2: ``[N, H, W, C] -> [N, H // 2, W // 2, C]`` (floor, as torch).

    The windows do not overlap, so the pool is a maximum over two reshaped axes, and its gradient
    goes to each window's first maximum in row-major order: exactly `nn.max_pool`'s values and
    gradient (and PyTorch's), ties included. Written out rather than as a ``reduce_window``
    because XLA:CPU differentiates that with select-and-scatter and index arrays, which took ~45%
    of a Fashion-MNIST KD step's traced time; this gradient is a few elementwise operations
    (docs/accelerators.md).
    """
    return _windows_2x2(x).max(axis=(2, 4))


def _max_pool_2x2_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_2x2_bwd(residuals, g):
    x, y = residuals
    n, h, w, c = x.shape
    is_max = _windows_2x2(x) == y[:, :, None, :, None, :]
    # Window positions in row-major order; each takes the gradient if it is the first maximum.
    e00, e01 = is_max[:, :, 0, :, 0], is_max[:, :, 0, :, 1]
    e10, e11 = is_max[:, :, 1, :, 0], is_max[:, :, 1, :, 1]
    first = (e00, e01 & ~e00, e10 & ~(e00 | e01), e11 & ~(e00 | e01 | e10))
    g00, g01, g10, g11 = (jnp.where(f, g, jnp.zeros_like(g)) for f in first)
    grad = jnp.stack([jnp.stack([g00, g01], axis=3), jnp.stack([g10, g11], axis=3)], axis=2)
    grad = grad.reshape(n, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(grad, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def max_pool_3x3_stride2(x: jnp.ndarray) -> jnp.ndarray:
    """Torchvision's ImageNet stem pool ``MaxPool2d(3, stride=2, padding=1)`` on NHWC.

    Padding takes no part in the maximum (Flax pads with -inf, as PyTorch ignores it).
    ``[N, H, W, C] -> [N, floor((H - 1) / 2) + 1, floor((W - 1) / 2) + 1, C]``.
    """
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def resize_bilinear(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """PyTorch's ``F.interpolate(x, size, mode='bilinear', align_corners=False)`` on NHWC.

    Half-pixel centers and no antialiasing (PyTorch's default ``antialias=False``; JAX's default
    would antialias when shrinking). ``[N, H, W, C] -> [N, size[0], size[1], C]``, in ``x``'s dtype.
    """
    return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), method="bilinear", antialias=False)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
    """Mean over the spatial axes, ``[N, H, W, C] -> [N, C]``."""
    return jnp.mean(x, axis=(1, 2))


def upsample_nearest_2x(x: jnp.ndarray) -> jnp.ndarray:
    """Upsample by 2, nearest neighbour: ``[N, H, W, C] -> [N, 2H, 2W, C]`` (``nn.Upsample``)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


dense_torch_default = functools.partial(nn.Dense, kernel_init=torch_default)
