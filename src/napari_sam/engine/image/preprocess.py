"""Image normalisation and the official SAM 1 / SAM 2 preprocessing, numpy in, tensor out.

Microscopy data comes in every dtype; SAM wants 8-bit RGB. :func:`to_uint8_rgb` maps a frame to
0-255 with the contrast limits the user sees in napari (or robust percentiles), NaN/inf as
background; then each family's own preprocessing reproduces the official predictors exactly:

* SAM 1 (``SamPredictor``): PIL bilinear resize of the longest side to S (new size
  ``int(x * scale + 0.5)``), normalise on 0-255 with the ImageNet mean/std, zero-pad to SxS.
* SAM 2 image predictor (``SAM2ImagePredictor``): /255, bilinear antialiased resize to SxS,
  ImageNet normalisation.
* SAM 2 video predictor (``SAM2VideoPredictor`` frame loader): PIL resize to SxS (its default,
  bicubic), /255 in float64, then float32 normalisation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..frames import read

SAM1_MEAN = (123.675, 116.28, 103.53)
SAM1_STD = (58.395, 57.12, 57.375)
SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)
ROBUST_PERCENTILES = (0.5, 99.8)


def _finite_sample(values: np.ndarray, max_values: int = 1_000_000) -> np.ndarray:
    flat = np.asarray(values).reshape(-1)
    if flat.size > max_values:
        flat = flat[:: flat.size // max_values + 1]
    flat = flat.astype(np.float64, copy=False)
    return flat[np.isfinite(flat)]


def robust_limits(values: np.ndarray) -> tuple[float, float]:
    """(low, high) at :data:`ROBUST_PERCENTILES` of the finite values; (0, 0) if none."""
    finite = _finite_sample(values)
    if finite.size == 0:
        return (0.0, 0.0)
    # Halved, the interpolation cannot overflow near the float64 maximum (and is exact: x / 2).
    lo, hi = np.percentile(finite / 2.0, ROBUST_PERCENTILES) * 2.0
    return (float(lo), float(hi))


def estimate_contrast_limits(frames, max_frames: int = 16) -> tuple[float, float]:
    """Contrast limits for a whole stack, from up to ``max_frames`` evenly spaced frames.

    One mapping for every frame, so a stack does not flicker. uint8 data keeps (0, 255);
    bool data (0, 1). ``frames`` is (T, ...) array-like, read lazily.
    """
    dtype = np.dtype(frames.dtype)
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype == np.bool_:
        return (0.0, 1.0)
    n = int(frames.shape[0])
    if n < 1:
        raise ValueError(f"a stack with no frames (shape {tuple(frames.shape)}) has no contrast limits")
    picks = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    per_frame = max(1, 1_000_000 // len(picks))
    samples = [_finite_sample(read(frames[int(i)]), per_frame) for i in picks]
    return robust_limits(np.concatenate(samples))


def check_contrast_limits(contrast_limits) -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)`` as two finite floats with ``lo <= hi``; else a ValueError."""
    if contrast_limits is None:
        return None
    try:
        lo, hi = (float(v) for v in contrast_limits)
    except (TypeError, ValueError):
        raise ValueError(f"contrast limits must be two numbers (low, high), got {contrast_limits!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"contrast limits must be finite, got {contrast_limits!r}")
    if lo > hi:
        raise ValueError(f"contrast limits must be (low, high) with low <= high, got {contrast_limits!r}")
    return lo, hi


def _stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float64 values -> 0..255 floats: lo -> 0, hi -> 255, linear, clipped; lo == hi is a
    threshold (above -> 255). Halved operands: no overflow even for limits near the float64
    maximum."""
    if hi > lo:
        with np.errstate(over="ignore"):  # a tiny hi - lo: inf, clipped to 255 below
            x = (x / 2.0 - lo / 2.0) * (255.0 / (hi / 2.0 - lo / 2.0))
        return np.clip(x, 0.0, 255.0)
    return np.where(x > hi, 255.0, 0.0)


def to_uint8_rgb(frame, contrast_limits=None) -> np.ndarray:
    """Map one (H, W), (H, W, 1) or (H, W, 3|4) frame of any real dtype to (H, W, 3) uint8.

    ``contrast_limits=(lo, hi)``: linear map lo -> 0, hi -> 255, clipped (what napari shows);
    ``lo == hi`` is a threshold (above it -> 255); ``lo > hi`` or NaN / inf limits are a
    ValueError. ``None``: uint8 data as it is, bool as 0/255, anything else by robust
    percentiles. NaN and +/-inf pixels become 0 (background). A constant image maps to 0.
    """
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(
            f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {np.shape(frame)}"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"images must hold real numbers or booleans, got dtype {a.dtype}")
    limits = check_contrast_limits(contrast_limits)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
        limits = (0.0, 1.0) if limits is None else limits
    if a.dtype == np.uint8 and limits is None:
        out = a
    else:
        lo, hi = robust_limits(a) if limits is None else limits
        x = a.astype(np.float64)
        bad = ~np.isfinite(x)
        x[bad] = lo  # NaN / inf: background
        x = _stretch(x, lo, hi)
        x[bad] = 0.0
        out = np.rint(x).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return np.ascontiguousarray(out)


def sam1_resized_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """SAM 1's resize: longest side to ``long_side``, each side ``int(x * scale + 0.5)`` (the
    official rounding) but at least 1 px, so that thin strips (5000 x 2, 1 x N) resize too."""
    if min(h, w) < 1:
        raise ValueError(f"image has no pixels: shape ({h}, {w})")
    scale = long_side / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def preprocess_sam1(rgb: np.ndarray, image_size: int = 1024) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, S, S) float32 as the official ``SamPredictor`` feeds its encoder."""
    h, w = rgb.shape[:2]
    nh, nw = sam1_resized_shape(h, w, image_size)
    resized = np.array(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
    x = torch.from_numpy(resized).permute(2, 0, 1).float()
    mean = torch.tensor(SAM1_MEAN).view(3, 1, 1)
    std = torch.tensor(SAM1_STD).view(3, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, image_size - nw, 0, image_size - nh))
    return x[None]


def preprocess_sam2_image(rgb: np.ndarray, image_size: int = 1024) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, S, S) float32 as the official ``SAM2ImagePredictor`` does."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)[None]
    x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(SAM2_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM2_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_sam2_video(rgb: np.ndarray, image_size: int = 1024) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, S, S) float32 as the official video frame loader does."""
    resized = np.array(Image.fromarray(rgb).resize((image_size, image_size), Image.BICUBIC))
    x = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    x -= torch.tensor(SAM2_MEAN, dtype=torch.float32)[:, None, None]
    x /= torch.tensor(SAM2_STD, dtype=torch.float32)[:, None, None]
    return x[None]
