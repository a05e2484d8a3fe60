"""FastDFKD's image generators (the original ``Generator`` and ``DeepGenerator``), in NHWC.

Both always normalize with batch statistics: the synthesizer trains them on every call, and the
original never switches them to eval mode. Call them as
``model.apply(variables, z, train=True, mutable=['batch_stats'])`` and discard the updated
statistics. Output images are in ``[0, 1]`` (sigmoid); normalization belongs to the augmentation.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fastdfkd_jax.models import layers

# LeakyReLU slope of the original generators.
LEAKY_SLOPE = 0.2


def _batch_stats_norm(name: str, dtype: Any) -> nn.BatchNorm:
    """Return a BatchNorm that always uses (and records) batch statistics."""
    return layers.batch_norm(train=True, name=name, dtype=dtype)


def _output_conv(nc: int, ngf: int, dtype: Any) -> nn.Conv:
    """The generators' last Conv3x3(ngf -> nc) with a bias, PyTorch's default init throughout."""
    return layers.conv(
        nc,
        3,
        use_bias=True,
        kernel_init=layers.torch_default,
        bias_init=layers.torch_bias_init(ngf * 3 * 3),
        dtype=dtype,
        name="conv_out",
    )


class Generator(nn.Module):
    """The FastDFKD generator: ``z [B, nz] -> images [B, img_size, img_size, nc]`` in ``[0, 1]``.

    Dense(nz -> 2*ngf * s*s), s = img_size // 4 -> reshape [B, s, s, 2*ngf] -> BN -> upsample x2 ->
    Conv3x3(2*ngf, no bias) -> BN -> LeakyReLU(0.2) -> upsample x2 -> Conv3x3(ngf, no bias) -> BN ->
    LeakyReLU(0.2) -> Conv3x3(nc, bias) -> sigmoid.

    Attributes:
      nz: latent size.
      ngf: base width (the convolutions have 2*ngf then ngf channels).
      img_size: output side; must be divisible by 4 (8, 28 and 32 are).
      nc: output channels.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32; the images come out in it.

    """

    nz: int = 256
    ngf: int = 64
    img_size: int = 32
    nc: int = 3
    dtype: Any = None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent vector (without the batch axis)."""
        return (self.nz,)

    @nn.compact
    def __call__(self, z: jnp.ndarray, *, train: bool = True) -> jnp.ndarray:
        """Map ``z [B, nz]`` to images ``[B, img_size, img_size, nc]`` in ``[0, 1]``.

        ``train`` is accepted for the common model interface and ignored: BN always uses batch
        statistics, so ``batch_stats`` must be mutable.
        """
        del train
        if self.img_size % 4:
            raise ValueError(f"img_size must be divisible by 4, got {self.img_size}")
        if z.ndim != 2 or z.shape[-1] != self.nz:
            raise ValueError(f"z must have shape [B, {self.nz}], got {z.shape}")
        s, dt, init = self.img_size // 4, self.dtype, layers.torch_default
        # PyTorch's default init throughout, biases too (U(+-1/sqrt(fan_in)), as the original's).
        x = nn.Dense(
            2 * self.ngf * s * s,
            kernel_init=init,
            bias_init=layers.torch_bias_init(self.nz),
            dtype=dt,
            name="l1",
        )(z)
        x = x.reshape(z.shape[0], s, s, 2 * self.ngf)
        x = _batch_stats_norm("bn0", dt)(x)
        x = layers.upsample_nearest_2x(x)
        x = layers.conv(2 * self.ngf, 3, kernel_init=init, dtype=dt, name="conv1")(x)
        x = nn.leaky_relu(_batch_stats_norm("bn1", dt)(x), LEAKY_SLOPE)
        x = layers.upsample_nearest_2x(x)
        x = layers.conv(self.ngf, 3, kernel_init=init, dtype=dt, name="conv2")(x)
        x = nn.leaky_relu(_batch_stats_norm("bn2", dt)(x), LEAKY_SLOPE)
        return nn.sigmoid(_output_conv(self.nc, self.ngf, dt)(x))


class DeepGenerator(nn.Module):
    """The ImageNet generator: spatial latent ``[B, h, w, nz] -> [B, 16h, 16w, nc]`` in ``[0, 1]``.

    Conv3x3(2*ngf) -> BN -> LeakyReLU at the latent resolution, then four times
    (upsample x2 -> Conv3x3 -> BN -> LeakyReLU) with widths 2*ngf, ngf, ngf, ngf, then
    Conv3x3(nc, bias) -> sigmoid. With the default 14x14 latent the output is 224x224. (The
    original also builds an unused Linear layer ``l1``; it is left out.)

    Attributes:
      nz: latent channels.
      ngf: base width.
      latent_size: side of the spatial latent (14 for 224x224 images; smaller in tests).
      nc: output channels.
      dtype: the computation dtype, e.g. bfloat16 (None: that of the inputs and parameters);
        parameters stay float32; the images come out in it.

    """

    nz: int = 256
    ngf: int = 64
    latent_size: int = 14
    nc: int = 3
    dtype: Any = None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent (without the batch axis): ``(latent_size, latent_size, nz)``."""
        return (self.latent_size, self.latent_size, self.nz)

    @property
    def img_size(self) -> int:
        """Side of the generated images (four 2x upsamplings of the latent)."""
        return self.latent_size * 16

    @nn.compact
    def __call__(self, z: jnp.ndarray, *, train: bool = True) -> jnp.ndarray:
        """Map ``z [B, latent_size, latent_size, nz]`` to ``[B, img_size, img_size, nc]``.

        ``train`` is ignored, as for :class:`Generator`.
        """
        del train
        if z.shape[1:] != self.latent_shape:
            raise ValueError(f"z must have shape [B, *{self.latent_shape}], got {z.shape}")
        dt, init = self.dtype, layers.torch_default
        x = layers.conv(2 * self.ngf, 3, kernel_init=init, dtype=dt, name="conv0")(z)
        x = nn.leaky_relu(_batch_stats_norm("bn0", dt)(x), LEAKY_SLOPE)
        for i, width in enumerate((2 * self.ngf, self.ngf, self.ngf, self.ngf), start=1):
            x = layers.upsample_nearest_2x(x)
            x = layers.conv(width, 3, kernel_init=init, dtype=dt, name=f"conv{i}")(x)
            x = nn.leaky_relu(_batch_stats_norm(f"bn{i}", dt)(x), LEAKY_SLOPE)
        return nn.sigmoid(_output_conv(self.nc, self.ngf, dt)(x))
