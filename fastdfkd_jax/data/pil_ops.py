"""torchvision's resizing and cropping of PIL images, reproduced exactly (host-side, per example).

Used to bring streamed datasets to a fixed evaluation size before batching; pixels equal
torchvision's ``Resize(size)`` and ``CenterCrop(size)`` on the same PIL image.
"""

from __future__ import annotations

import PIL.Image


def resize_shorter_side(
    image: PIL.Image.Image, size: int, resample: int = PIL.Image.BILINEAR
) -> PIL.Image.Image:
    """Torchvision's ``Resize(size)``: the shorter side becomes ``size``, the aspect ratio stays.

    The longer side is ``int(size * long / short)`` (truncated, as torchvision). ``resample`` is
    bilinear by default (PIL antialiases when shrinking, torchvision's default on PIL images);
    label maps take ``PIL.Image.NEAREST``.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, resample)


def center_crop(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Torchvision's ``CenterCrop(size)`` of an image at least ``size`` on each side.

    The offsets are ``int(round((side - size) / 2))`` (Python's round, as torchvision).
    """
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"center_crop({size}) needs an image of at least {size}, got {image.size}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))
