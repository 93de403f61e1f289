"""``resize`` and ``to_pil_image`` on PIL images, as torchvision documents them."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_pil_image(pic, mode=None):
    arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)


def resize(img, size, interpolation=Image.BILINEAR, max_size=None, antialias=True):
    """A PIL image to ``size`` = (h, w) (bilinear: PIL's own filter)."""
    if isinstance(size, int):  # the shorter side to ``size``, the other in proportion
        w, h = img.size
        if w <= h:
            return img.resize((size, int(size * h / w)), interpolation)
        return img.resize((int(size * w / h), size), interpolation)
    h, w = size
    return img.resize((int(w), int(h)), interpolation)
