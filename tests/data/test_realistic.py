"""The realistic generator (issue 14, part B): seeded, the bit depths it promises, consistent
labels, the size range, varied shapes, low SNR, stacks whose nuclei end inside them, and
time-lapses with divisions, entries and exits."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as connected
from skimage.measure import regionprops

from napari_sam.data import realistic as real

SEEDS = range(12)


@pytest.fixture(scope="module")
def scenes():
    return [real.realistic_image(s) for s in SEEDS]


def _interior(labels):
    """Ids of objects that do not touch the image border."""
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ids = np.unique(labels[labels > 0])
    return ids[~np.isin(ids, border)]


def test_seeded_and_deterministic():
    a, b, c = real.realistic_image(3), real.realistic_image(3), real.realistic_image(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.image.dtype == b.image.dtype and a.extra == b.extra
    assert not np.array_equal(a.labels, c.labels)
    z1, z2 = real.realistic_zstack(5, shape=(12, 64, 64)), real.realistic_zstack(5, shape=(12, 64, 64))
    assert np.array_equal(z1.image, z2.image) and np.array_equal(z1.labels, z2.labels)
    t1, t2 = real.realistic_timelapse(6, n_frames=5, shape=(96, 96)), real.realistic_timelapse(6, n_frames=5, shape=(96, 96))
    assert np.array_equal(t1.image, t2.image) and np.array_equal(t1.labels, t2.labels)
    assert t1.lineage == t2.lineage and np.array_equal(t1.tracks, t2.tracks)


@pytest.mark.parametrize("depth, dtype, vmax", [("uint8", np.uint8, 255), ("uint12", np.uint16, 4095),
                                                ("uint16", np.uint16, 65535)])
def test_bit_depths(depth, dtype, vmax):
    s = real.realistic_image(1, depth=depth)
    assert s.image.dtype == dtype and s.labels.dtype == np.int32 and s.image.shape == s.labels.shape == (256, 256)
    assert s.extra["bit_depth"] == {"uint8": 8, "uint12": 12, "uint16": 16}[depth]
    assert int(s.image.max()) <= vmax
    if depth != "uint8":
        assert int(s.image.max()) > 255  # more than 8 bits in use
    img = s.image.astype(float)
    far = ndi.binary_dilation(s.labels > 0, iterations=6) == 0
    assert img[s.labels > 0].mean() > img[far].mean()  # objects stand out of the background


def test_depths_and_contrast_ranges_vary(scenes):
    depths = {s.extra["bit_depth"] for s in scenes}
    assert depths == {8, 12, 16}
    top16 = [int(s.image.max()) for s in scenes if s.extra["bit_depth"] == 16]
    top16 += [int(real.realistic_image(100 + k, depth="uint16").image.max()) for k in range(6)]
    assert max(top16) > 10 * min(top16)  # 16-bit images use from a sliver of the range to most of it


def test_labels_consistent(scenes):
    touching = 0
    for s in scenes:
        lab = s.labels
        ids = np.unique(lab[lab > 0])
        assert len(ids) > 0 and set(ids.tolist()) <= set(s.extra["diameters"])
        # each object is one 4-connected piece: the number of pieces equals the number of ids
        assert connected(lab, background=0, connectivity=1).max() == len(ids)
        pairs = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
        pairs |= np.pad((lab[1:] != lab[:-1]) & (lab[1:] > 0) & (lab[:-1] > 0), ((0, 1), (0, 0)))[:, 1:]
        touching += int(pairs.sum() > 0)
    assert touching >= len(scenes) // 2  # touching objects (distinct ids) are common


def test_size_range_honoured(scenes):
    nominal = np.concatenate([list(s.extra["diameters"].values()) for s in scenes])
    assert nominal.min() >= 6.0 and nominal.max() <= 80.0
    measured = []
    for s in scenes:
        ids = _interior(s.labels)
        area = ndi.sum_labels(np.ones_like(s.labels), s.labels, ids)
        measured.append(2 * np.sqrt(area / np.pi))
    measured = np.concatenate(measured)
    assert measured.max() <= 86.0  # an outline's lobes add a little to the mean diameter
    assert np.percentile(measured, 2) >= 4.0  # only neighbours' bites go below 6
    assert measured.min() < 12.0 and measured.max() > 40.0  # small and large scenes both drawn
    for d in (8.0, 30.0):  # the diameter asked for is the one drawn
        s = real.realistic_image(7, diameter=d, kind="nuclei")
        ids = _interior(s.labels)
        eq = 2 * np.sqrt(ndi.sum_labels(np.ones_like(s.labels), s.labels, ids) / np.pi)
        assert 0.7 * d < np.median(eq) < 1.25 * d


def test_shapes_and_looks_vary(scenes):
    ecc, solidity = [], []
    for s in scenes:
        for p in regionprops(s.labels):
            if p.area >= 60:
                ecc.append(p.eccentricity)
                solidity.append(p.solidity)
    ecc, solidity = np.array(ecc), np.array(solidity)
    assert ecc.min() < 0.4 and np.mean(ecc > 0.9) > 0.03  # round and elongated
    assert np.mean(solidity < 0.85) > 0.02  # lobed / irregular outlines
    kinds = {s.extra["style"]["kind"] for s in scenes}
    assert kinds == {"nuclei", "cells"}


def test_noise_reaches_low_snr(scenes):
    """Object contrast over the local (high-pass) noise: from barely visible to clean."""
    snr = []
    for s in scenes:
        img = s.image.astype(float)
        inner = ndi.binary_erosion(s.labels > 0, iterations=2)
        far = ndi.binary_dilation(s.labels > 0, iterations=6) == 0
        if inner.sum() < 50 or far.sum() < 50:
            continue
        noise = (img - ndi.uniform_filter(img, 3))[far].std() * np.sqrt(9 / 8)
        snr.append((np.median(img[inner]) - np.median(img[far])) / max(noise, 1e-9))
    assert min(snr) < 4.0 and max(snr) > 15.0, snr


def test_zstack_objects_start_and_end_inside():
    s = real.realistic_zstack(2, shape=(24, 96, 96))
    assert s.axes == "zyx" and s.image.shape == s.labels.shape == (24, 96, 96)
    z_step = s.scale[0]
    assert 1.5 <= z_step <= 5.0 and s.scale[1:] == (1.0, 1.0) and s.extra["z_step"] == z_step
    ids = np.unique(s.labels[s.labels > 0])
    inside = 0
    for i in ids:
        zs = np.flatnonzero((s.labels == i).any(axis=(1, 2)))
        assert np.array_equal(zs, np.arange(zs[0], zs[-1] + 1))  # one run of slices
        if zs[0] > 0 and zs[-1] < 23:
            inside += 1
            area = (s.labels[zs] == i).sum(axis=(1, 2))
            assert area.max() > area[0] and area.max() > area[-1] or len(zs) <= 2  # widest inside
    assert inside >= 0.5 * len(ids) and inside >= 3
    # coarse z: a nucleus spans fewer slices than pixels across
    z = real.realistic_zstack(3, shape=(24, 96, 96), z_step=4.0, diameter=24.0)
    spans = [np.ptp(np.flatnonzero((z.labels == i).any(axis=(1, 2)))) + 1 for i in np.unique(z.labels[z.labels > 0])]
    assert np.median(spans) < 24.0 / 4.0 + 1


def test_timelapse_divisions_entries_exits():
    s = next(t for t in (real.realistic_timelapse(k, n_frames=24, shape=(160, 160)) for k in range(6))
             if (t.tracks[:, 3] > 0).sum() >= 2)
    assert s.axes == "tyx" and s.image.shape == s.labels.shape == (24, 160, 160)
    tracks = s.tracks
    last = {int(r[0]): int(r[2]) for r in tracks}
    assert s.lineage == {int(r[0]): int(r[3]) for r in tracks}
    daughters = tracks[tracks[:, 3] > 0]
    for lab, first, _, mom in daughters:
        assert last[int(mom)] == first - 1  # the mother is in view the frame before
        assert not (s.labels[first] == mom).any()  # and gone: two new labels instead
    moms, counts = np.unique(daughters[:, 3], return_counts=True)
    assert counts.max() == 2
    # frames agree with the rows: every label lies within its first..last frames
    for lab, first, end, _ in tracks:
        present = np.flatnonzero((s.labels == lab).any(axis=(1, 2)))
        assert present[0] == first and present[-1] == end
    entered = tracks[(tracks[:, 1] > 0) & (tracks[:, 3] == 0)]
    left = [r for r in tracks if r[2] < 23 and r[0] not in set(tracks[:, 3].tolist())]
    assert len(entered) + len(left) >= 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        real.realistic_image(0, shape=(8, 8))
    with pytest.raises(ValueError, match="uint10"):
        real.realistic_image(0, depth="uint10")
    with pytest.raises(ValueError, match="tissue"):
        real.realistic_image(0, kind="tissue")
    with pytest.raises(ValueError, match="z_step"):
        real.realistic_zstack(0, z_step=-1.0)
    with pytest.raises(ValueError, match="n_frames"):
        real.realistic_timelapse(0, n_frames=0)
