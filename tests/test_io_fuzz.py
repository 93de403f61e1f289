"""The readers under random input (hypothesis): TIFF and zarr files of odd dtypes and shapes,
truncated files, damaged headers and metadata.

The contract: a file is either read exactly (the shape and the values written) or refused
with :class:`napari_sam.io.InputError` (a ``ValueError``) — no other exception, and never a
silently different shape. Kept small: a few dozen examples per property, no deadline.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_sam.io import InputError, open_image

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NUMERIC = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
IMAGEJ = ["uint8", "uint16", "float32"]


@pytest.fixture(autouse=True)
def _quiet_tifffile():
    """tifffile logs what it finds wrong with damaged files; the reader turns that into errors."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@st.composite
def tiff_cases(draw, min_frames=1):
    flavour = draw(st.sampled_from(["plain", "shaped", "imagej", "ome"]))
    dtype = draw(st.sampled_from(IMAGEJ if flavour == "imagej" else NUMERIC))
    n = draw(st.integers(min_frames, 5))
    low = 2 if flavour == "imagej" else 1  # tifffile writes an ImageJ (..., H, 1) stack as (..., 1, H)
    h, w = draw(st.integers(low, 24)), draw(st.integers(low, 24))
    compress = flavour != "imagej" and draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    rng = np.random.default_rng(seed)
    if info is None:
        data = rng.normal(size=(n, h, w)).astype(dtype)
    else:
        data = rng.integers(info.min, info.max, size=(n, h, w), endpoint=True, dtype=dtype)
    return flavour, data, compress


def _write_tiff(path: Path, flavour, data, compress):
    kw = {"compression": "zlib"} if compress else {}
    if flavour == "plain":
        tifffile.imwrite(path, data, metadata=None, photometric="minisblack", **kw)
    elif flavour == "shaped":
        tifffile.imwrite(path, data, metadata={"axes": "TYX"}, photometric="minisblack", **kw)
    elif flavour == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    else:
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "TYX"}, photometric="minisblack", **kw)


def _expected(data):
    return data[0] if data.shape[0] == 1 else data


def _read_or_refuse(path):
    """The stack as numpy, or None when refused with InputError (anything else fails the test)."""
    try:
        arr, _ = open_image(path).stack()
        assert all(s > 0 for s in arr.shape)
        if arr.nbytes > 64 * 2**20:  # a damaged header may claim a huge image: refuse, never read it all
            return None
        out = np.asarray(arr)
    except InputError:
        return None
    assert out.shape == arr.shape  # what the reader says is what it gives
    return out


@FUZZ
@given(tiff_cases())
def test_valid_tiffs_read_back_exactly(case):
    flavour, data, compress = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.tif"
        _write_tiff(p, flavour, data, compress)
        arr, axis = open_image(p).stack()
        want = _expected(data)
        assert arr.shape == want.shape and arr.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(arr), want)
        assert axis == (None if data.shape[0] == 1 else ("Q" if flavour == "plain" else "T"))


@FUZZ
@given(tiff_cases(min_frames=2), st.floats(0.0, 1.0))
def test_truncated_tiff_is_refused_or_read_whole(case, keep):
    flavour, data, compress = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.tif"
        _write_tiff(p, flavour, data, compress)
        raw = p.read_bytes()
        cut = int(keep * (len(raw) - 1))
        p.write_bytes(raw[:cut])
        got = _read_or_refuse(p)
        if got is not None:  # only trailing bytes that hold no pixel data may go missing unnoticed
            assert got.shape == data.shape
            np.testing.assert_array_equal(got, data)


@FUZZ
@given(tiff_cases(), st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_tiff_header_is_refused_or_read_consistently(case, edits):
    flavour, data, compress = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.tif"
        _write_tiff(p, flavour, data, compress)
        raw = bytearray(p.read_bytes())
        for pos, value in edits:
            raw[pos % len(raw)] = value
        p.write_bytes(bytes(raw))
        _read_or_refuse(p)


DTYPES = [*NUMERIC, "bool", "float16", "complex64", "int64"]


@FUZZ
@given(st.lists(st.integers(0, 5), min_size=0, max_size=5), st.sampled_from(DTYPES),
       st.one_of(st.none(), st.lists(st.one_of(st.sampled_from(list("tzcyxsq")), st.text(max_size=3),
                                               st.integers(), st.none()), max_size=6)))
def test_zarr_arrays_of_any_shape_dtype_and_dims(shape, dtype, dims):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.zarr"
        attrs = {} if dims is None else {"_ARRAY_DIMENSIONS": dims}
        data = (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape)
        zarr.create_array(str(p), data=data, attributes=attrs)
        try:
            arr, _ = open_image(p).stack()
        except InputError:
            return
        assert np.dtype(dtype).kind in "biuf" and 0 not in arr.shape
        assert arr.ndim in (2, 3, 4) and set(arr.shape) <= set(shape) | {3}  # RGBA is read as RGB
        out = np.asarray(arr)
        assert out.shape == arr.shape and out.dtype == np.dtype(dtype)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 9) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12)


@FUZZ
@given(st.one_of(JSON, st.fixed_dictionaries({"multiscales": JSON}),
                 st.fixed_dictionaries({"multiscales": st.lists(st.fixed_dictionaries(
                     {"datasets": st.lists(st.fixed_dictionaries({"path": st.sampled_from(["0", "1", "", "../x"])}),
                                           max_size=2), "axes": JSON}), max_size=2)})))
def test_zarr_group_with_random_ome_metadata(attrs):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.ome.zarr"
        g = zarr.open_group(str(p), mode="w")
        g.attrs.update(attrs if isinstance(attrs, dict) else {"multiscales": attrs})
        g.create_array("0", data=np.ones((2, 6, 7), np.uint16))
        try:
            arr, _ = open_image(p).stack()
        except InputError:
            return
        assert arr.shape in ((2, 6, 7), (6, 7)) or arr.ndim == 3


@FUZZ
@given(st.one_of(st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode())))
def test_garbage_zarr_json_is_refused(content):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.zarr"
        zarr.create_array(str(p), data=np.ones((4, 5), np.uint8))
        (p / "zarr.json").write_bytes(content)
        with pytest.raises(InputError):
            open_image(p).stack()


PROMPT = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(-1, 3), st.floats(allow_nan=True), st.text(max_size=2)),
    "frame": st.one_of(st.integers(-1, 3), st.floats(0, 2)), "box": JSON,
    "points": st.one_of(JSON, st.lists(st.lists(st.one_of(st.floats(-2, 40), st.just(float("nan"))), max_size=3), max_size=3)),
    "labels": st.one_of(JSON, st.lists(st.sampled_from([0, 1, 2, 0.5, True]), max_size=3))})


@FUZZ
@given(st.one_of(JSON, st.lists(st.one_of(PROMPT, JSON), max_size=3), st.fixed_dictionaries({"objects": JSON})))
def test_json_prompt_files_are_read_or_refused(content):
    from napari_sam.io import read_prompts

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "p.json"
        p.write_text(json.dumps(content))
        try:
            prompts = read_prompts(p, (30, 40), 3)
        except InputError as err:
            assert str(p) in str(err)
            return
        for t, objects in prompts.items():  # what comes back is what the engine takes
            assert 0 <= t < 3
            for oid, obj in objects.items():
                assert isinstance(oid, int) and oid >= 1 and len(obj["points"]) == len(obj["labels"])
                assert all(-0.5 <= x <= 39.5 and -0.5 <= y <= 29.5 for x, y in obj["points"])
                assert set(obj["labels"]) <= {0, 1} and (obj["box"] is None or len(obj["box"]) == 4)


# ---------------------------------------------------------------------------- fixed cases
def test_truncated_imagej_stack_names_both_counts(tmp_path):
    stack = np.ones((20, 128, 128), np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "TYX"})
    (tmp_path / "t.tif").write_bytes((tmp_path / "s.tif").read_bytes()[:590000])
    with pytest.raises(InputError, match=r"t\.tif: .*20 images.* only 17"):
        open_image(tmp_path / "t.tif")


def test_plain_multipage_tiff_that_lost_pages_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.ones((6, 16, 16), np.uint8), metadata=None)
    raw = (tmp_path / "s.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or damaged"):
        open_image(tmp_path / "t.tif")


def test_unsupported_pixel_types_are_named(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.ones((4, 4), np.complex64))
    with pytest.raises(InputError, match="complex64"):
        open_image(tmp_path / "c.tif")


def test_an_empty_image_is_refused(tmp_path):
    zarr.create_array(str(tmp_path / "e.zarr"), data=np.ones((3, 0, 5), np.uint8))
    with pytest.raises(InputError, match="no pixels"):
        open_image(tmp_path / "e.zarr").stack()
