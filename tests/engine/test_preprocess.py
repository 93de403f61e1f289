"""Image normalisation (any dtype -> uint8 RGB) and parity of the official preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from napari_sam.engine.image.preprocess import (
    SAM1_MEAN,
    SAM1_STD,
    estimate_contrast_limits,
    preprocess_sam1,
    preprocess_sam2_image,
    preprocess_sam2_video,
    to_uint8_rgb,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int8, np.float32, np.float64])
def test_any_dtype_maps_to_uint8_rgb(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    hi = 200 if info is None else min(info.max, 4000)
    lo = 0 if info is None else max(info.min, -100)
    img = rng.integers(lo, hi, (40, 50)).astype(dtype)
    out = to_uint8_rgb(img)
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    assert (out[..., 0] == out[..., 2]).all()
    if dtype == np.uint8:
        np.testing.assert_array_equal(out[..., 0], img)
    else:  # robust percentiles span (almost) the full range, monotonically
        assert out.min() == 0 and out.max() == 255
        order = np.argsort(img.ravel(), kind="stable")
        assert (np.diff(out[..., 0].ravel()[order].astype(int)) >= 0).all()


def test_contrast_limits_are_what_napari_shows():
    img = np.array([[50, 200], [355, 1000]], dtype=np.uint16)
    out = to_uint8_rgb(img, contrast_limits=(100, 355))[..., 0]
    np.testing.assert_array_equal(out, [[0, 100], [255, 255]])


def test_nan_inf_are_background_and_constant_image_works():
    img = np.full((8, 8), 5.0)
    img[0, 0], img[1, 1], img[2, 2] = np.nan, np.inf, -np.inf
    img[3:5, 3:5] = 9.0
    out = to_uint8_rgb(img)[..., 0]
    assert out[0, 0] == out[1, 1] == out[2, 2] == 0
    assert out[3, 3] == 255
    assert to_uint8_rgb(np.full((5, 6), 7, np.uint16)).max() == 0
    assert to_uint8_rgb(np.full((5, 6), np.nan)).max() == 0


def test_bool_and_rgb_and_rgba():
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    assert to_uint8_rgb(m)[1, 1].tolist() == [255, 255, 255] and to_uint8_rgb(m)[0, 0].max() == 0
    rgba = np.random.default_rng(1).integers(0, 255, (6, 7, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_rgb(rgba), rgba[..., :3])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        to_uint8_rgb(np.zeros((2, 3, 4, 5)))


def test_stack_contrast_limits_are_shared():
    stack = np.stack([np.full((10, 10), v, np.uint16) for v in (10, 20, 30, 40)])
    stack[:, 0, 0] = 0
    lo, hi = estimate_contrast_limits(stack)
    assert lo == 0 and 30 < hi <= 40
    assert estimate_contrast_limits(np.zeros((3, 4, 4), np.uint8)) == (0.0, 255.0)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(300, 500), (517, 211), (1024, 1024)])
def test_sam1_preprocessing_equals_official(hw):
    from segment_anything.utils.transforms import ResizeLongestSide

    rgb = _rgb(*hw)
    resized = ResizeLongestSide(1024).apply_image(rgb)
    x = torch.as_tensor(resized).permute(2, 0, 1).float()
    x = (x - torch.tensor(SAM1_MEAN).view(3, 1, 1)) / torch.tensor(SAM1_STD).view(3, 1, 1)
    x = torch.nn.functional.pad(x, (0, 1024 - x.shape[2], 0, 1024 - x.shape[1]))
    assert torch.equal(preprocess_sam1(rgb)[0], x)


def test_sam2_image_preprocessing_equals_official():
    from sam2.utils.transforms import SAM2Transforms

    rgb = _rgb(300, 411)
    t = SAM2Transforms(resolution=1024, mask_threshold=0.0)
    ref = t(rgb)[None]
    torch.testing.assert_close(preprocess_sam2_image(rgb), ref, rtol=0, atol=1e-6)


def test_sam2_video_preprocessing_equals_official(tmp_path):
    from sam2.utils.misc import load_video_frames

    frames = [_rgb(120, 170, s) for s in range(2)]
    for i, f in enumerate(frames):  # lossless PNG data under the names the official loader wants
        Image.fromarray(f).save(tmp_path / f"{i}.jpg", format="PNG")
    ref, h, w = load_video_frames(str(tmp_path), image_size=256, offload_video_to_cpu=True)
    assert (h, w) == (120, 170)
    for i, f in enumerate(frames):
        assert torch.equal(preprocess_sam2_video(f, 256)[0], ref[i])
