"""Property-based tests of the image normalisation (``to_uint8_rgb``, ``robust_limits``,
``estimate_contrast_limits``) and of the model input built from it: any dtype, any 2D shape,
any values (extremes, inf, NaN), any contrast limits. Either a clear ``ValueError`` or an
(H, W, 3) uint8 image whose model input holds no NaN; never another exception, never a
RuntimeWarning (a NaN cast to uint8 warns), never another shape."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_sam.engine.image.preprocess import (
    estimate_contrast_limits,
    preprocess_sam1,
    preprocess_sam2_image,
    preprocess_sam2_video,
    robust_limits,
    to_uint8_rgb,
)

DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
          np.int64, np.float16, np.float32, np.float64]
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def images(draw, dtypes=DTYPES):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    tail = draw(st.sampled_from([(), (1,), (3,), (4,)]))
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=True, allow_infinity=True)
    else:
        elements = None  # the dtype's full range
    fill = draw(st.sampled_from(["random", "constant", "nan"])) if dtype.kind == "f" else "random"
    if fill == "random":
        return draw(hnp.arrays(dtype, (h, w, *tail), elements=elements))
    value = np.nan if fill == "nan" else draw(elements)
    return np.full((h, w, *tail), value, dtype)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
limits = st.one_of(
    st.none(),
    st.tuples(finite_or_not, finite_or_not),
    st.floats(-1e6, 1e6).map(lambda v: (v, v)),  # equal
    st.tuples(st.floats(-1e6, 1e6), st.floats(1e-3, 1e6)).map(lambda t: (t[0] + t[1], t[0])),  # reversed
)


def _normalise(image, contrast_limits):
    """to_uint8_rgb with warnings as errors: (result, None) or (None, ValueError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return to_uint8_rgb(image, contrast_limits), None
        except ValueError as err:
            return None, err


@FAST
@given(image=images(), contrast_limits=limits)
def test_any_image_any_limits_gives_rgb_uint8_or_a_clear_error(image, contrast_limits):
    out, err = _normalise(image, contrast_limits)
    if err is not None:  # only bad contrast limits may be refused; every image here is valid
        assert contrast_limits is not None, f"image refused: {err}"
        lo, hi = contrast_limits
        assert not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi), f"limits {contrast_limits} refused: {err}"
        assert "contrast limits" in str(err)
        return
    h, w = image.shape[:2]
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    if image.ndim == 2 or image.shape[-1] == 1:
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    for pre in (preprocess_sam1, preprocess_sam2_image, preprocess_sam2_video):
        x = pre(out, 32)
        assert x.shape == (1, 3, 32, 32) and torch.isfinite(x).all()


@FAST
@given(image=images([np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64]),
       contrast_limits=st.one_of(st.none(), st.tuples(st.floats(-1e300, 1e300), st.floats(-1e300, 1e300))))
def test_mapping_is_monotone_and_limits_are_respected(image, contrast_limits):
    """Brighter pixels never map darker; with limits lo < hi, <= lo is 0 and >= hi is 255."""
    if contrast_limits is not None:
        contrast_limits = tuple(sorted(contrast_limits))
    out, err = _normalise(image, contrast_limits)
    assert err is None, err
    grey = image[..., 0] if image.ndim == 3 else image
    finite = np.isfinite(grey.astype(np.float64))
    v, o = grey[finite].astype(np.float64), out[..., 0][finite].astype(int)
    order = np.argsort(v, kind="stable")
    assert (np.diff(o[order]) >= 0).all(), (v[order], o[order])
    assert (out[..., 0][~finite] == 0).all()  # NaN / inf are background
    if contrast_limits is not None and contrast_limits[0] < contrast_limits[1]:
        lo, hi = contrast_limits
        assert (o[v <= lo] == 0).all() and (o[v >= hi] == 255).all()


@FAST
@given(values=hnp.arrays(np.float64, st.integers(1, 60),
                         elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_robust_limits_are_finite_and_ordered(values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = robust_limits(values)
    finite = values[np.isfinite(values)]
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
    if finite.size:
        assert finite.min() <= lo and hi <= finite.max()
    else:
        assert (lo, hi) == (0.0, 0.0)


# ------------------------------------------------------------------ defects found, pinned


def test_extreme_floats_map_without_nan():
    """Found by hypothesis: with values near the float64 maximum, hi - lo overflowed to inf,
    the robust limits came out inf ("contrast limits must be finite, got None") and given limits
    spanning the range turned pixels into NaN before the uint8 cast."""
    img = np.array([[-1.7e308, 0.0], [1.0, 1.7e308]])
    lo, hi = robust_limits(img)
    assert np.isfinite(lo) and np.isfinite(hi)
    out, err = _normalise(img, None)
    assert err is None, err
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255
    out, err = _normalise(img, (-1.7e308, 1.7e308))
    assert err is None, err
    assert out[..., 0].tolist() == [[0, 128], [128, 255]]


def test_single_channel_image_is_grey():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4, 1)
    np.testing.assert_array_equal(to_uint8_rgb(img), to_uint8_rgb(img[..., 0]))


@pytest.mark.parametrize("bad", [(1.0, 0.0), (np.nan, 5.0), (0.0, np.inf), (1, 2, 3), 5.0, (None, 3), "ab"])
@pytest.mark.parametrize("dtype", [np.uint16, np.bool_, np.float32])
def test_bad_contrast_limits_are_a_clear_value_error(bad, dtype):
    """Found by hypothesis: reversed limits silently gave a black image; a scalar, a 3-tuple or
    (None, x) raised TypeError / an unpacking error (bool images: 'iteration over a 0-d array')."""
    with pytest.raises(ValueError, match="contrast limits"):
        to_uint8_rgb(np.zeros((3, 3), dtype), contrast_limits=bad)


def test_equal_contrast_limits_are_a_threshold():
    """Equal limits (e.g. the robust percentiles of a few bright spots on a flat background):
    the spots stay visible instead of the whole image turning black."""
    img = np.zeros((40, 40), np.uint16)
    img[5, 5] = img[20, 30] = 900  # 2 of 1600 pixels: above the 99.8th percentile
    out = to_uint8_rgb(img)[..., 0]
    assert out[5, 5] == out[20, 30] == 255 and out.sum() == 2 * 255
    out = to_uint8_rgb(np.array([[1.0, 2.0], [3.0, 2.0]]), contrast_limits=(2.0, 2.0))[..., 0]
    assert out.tolist() == [[0, 0], [255, 0]]
    assert to_uint8_rgb(np.full((4, 4), 7.0)).max() == 0  # a constant image stays 0


@pytest.mark.parametrize("dtype", ["U3", object, np.complex64, "datetime64[s]"])
def test_non_numeric_image_is_a_clear_value_error(dtype):
    with pytest.raises(ValueError, match="dtype"):
        to_uint8_rgb(np.zeros((3, 3), dtype))


def test_empty_stack_contrast_limits_are_a_clear_value_error():
    """Found by hand: an empty stack divided by zero picking frames."""
    with pytest.raises(ValueError, match="no frames"):
        estimate_contrast_limits(np.zeros((0, 4, 4), np.uint16))


@settings(max_examples=60, deadline=None, database=None)
@given(stack=hnp.arrays(st.sampled_from([np.uint16, np.int64, np.float32, np.float64]),
                        st.tuples(st.integers(1, 20), st.integers(1, 5), st.integers(1, 5))))
def test_stack_limits_are_finite_and_ordered(stack):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = estimate_contrast_limits(stack)
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
