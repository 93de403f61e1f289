"""The synthetic-microscopy generator: reproducible, realistic in the ways that matter, fast."""

import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam.data import synthetic as syn


def _object_stats(image, labels):
    ids = np.unique(labels[labels > 0])
    img = image.astype(np.float64)
    area = ndi.sum_labels(np.ones_like(labels), labels, ids)
    mean = ndi.mean(img, labels, ids)
    return ids, area, mean


def test_reproducible_and_seeded():
    a, b, c = syn.nuclei_2d(seed=5), syn.nuclei_2d(seed=5), syn.nuclei_2d(seed=6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    t1, t2 = syn.timelapse(n_frames=8, seed=3), syn.timelapse(n_frames=8, seed=3)
    assert np.array_equal(t1.image, t2.image) and np.array_equal(t1.labels, t2.labels)
    assert t1.lineage == t2.lineage


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_dtypes(dtype):
    s = syn.nuclei_2d(seed=0, dtype=dtype)
    assert s.image.dtype == np.dtype(dtype) and s.labels.dtype == np.int32
    assert s.image.shape == s.labels.shape == (256, 256)
    _, _, mean = _object_stats(s.image, s.labels)
    bg = s.image[s.labels == 0].astype(float)
    # every object stands out of the background, whatever the dtype
    assert np.median(mean) > np.median(bg) + 4 * bg.std()
    if dtype == "uint8":
        assert s.image.max() <= 255 and (s.image == 255).mean() < 0.01  # little saturation


def test_nuclei_vary_touch_and_are_noisy():
    s = syn.nuclei_2d(seed=0)
    ids, area, mean = _object_stats(s.image, s.labels)
    assert len(ids) == 40
    assert area.std() / area.mean() > 0.2  # size varies
    assert mean.std() / mean.mean() > 0.15  # brightness varies
    # touching objects: some pixels of one object are 4-neighbours of another object
    lab = s.labels
    pairs = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
    assert pairs.sum() > 10
    # shape varies: eccentricity spread
    from skimage.measure import regionprops

    ecc = np.array([p.eccentricity for p in regionprops(lab)])
    assert ecc.min() < 0.5 < 0.75 < ecc.max()
    # shot noise: variance grows with the signal (Poisson), background is not flat (uneven)
    bg = s.image[ndi.binary_dilation(lab > 0, iterations=4) == 0].astype(float)
    inner = s.image[ndi.binary_erosion(lab > 0, iterations=3)].astype(float)
    hp = lambda x: x - ndi.uniform_filter(x, 3)  # noqa: E731 - local (high-pass) noise
    noise = hp(s.image.astype(float))
    assert noise[ndi.binary_erosion(lab > 0, iterations=3)].std() > 1.3 * noise[ndi.binary_dilation(lab > 0, iterations=4) == 0].std()
    assert inner.mean() > bg.mean()
    quad = [s.image[:128, :128], s.image[:128, 128:], s.image[128:, :128], s.image[128:, 128:]]
    bgq = [np.median(q.astype(float)) for q in quad]
    assert max(bgq) - min(bgq) > 2.0  # uneven background (counts)


def test_cells_two_channels_and_rgb():
    s = syn.cells_2d(seed=0)
    assert s.image.shape == (2, 256, 256) and s.axes == "cyx"
    nuc = s.extra["nuclei"]
    assert set(np.unique(nuc)) <= set(np.unique(s.labels))
    assert np.all(s.labels[nuc > 0] == nuc[nuc > 0])  # every nucleus lies inside its own cell
    assert (nuc > 0).sum() < 0.5 * (s.labels > 0).sum()
    rgb = syn.composite_rgb(s.image)
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
    # nuclei are magenta (red+blue), cytoplasm green
    assert rgb[nuc > 0][:, 0].mean() > rgb[(s.labels > 0) & (nuc == 0)][:, 0].mean()


def test_stack_3d_anisotropic():
    s = syn.nuclei_3d(seed=0)
    assert s.image.shape == s.labels.shape == (32, 160, 160) and s.scale == (2.0, 1.0, 1.0)
    objs = ndi.find_objects(s.labels)
    dz = np.array([o[0].stop - o[0].start for o in objs if o is not None])
    dx = np.array([o[2].stop - o[2].start for o in objs if o is not None])
    assert np.median(dz) >= 5  # objects span several slices (propagation has work to do)
    assert np.median(dz * 2.0) < np.median(dx)  # flattened in z, in physical units
    # light fades with depth
    ids, _, mean = _object_stats(s.image, s.labels)
    zc = np.array([c[0] for c in ndi.center_of_mass(s.labels > 0, s.labels, ids)])
    assert np.corrcoef(zc, mean)[0, 1] < 0


def test_timelapse_dynamics_and_lineage():
    s = syn.timelapse(seed=4)
    t = len(s.image)
    assert s.image.shape == s.labels.shape == (30, 256, 256) and s.axes == "tyx"
    tracks = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in s.tracks}
    assert set(tracks) == set(np.unique(s.labels[s.labels > 0]).tolist()) == set(s.lineage)
    children = {k: v for k, v in s.lineage.items() if v}
    assert len(children) >= 4  # divisions happen
    for child, parent in children.items():
        # daughter appears right after the mother's last frame, next to where she was
        assert tracks[child][0] == tracks[parent][1] + 1
        mom = np.argwhere(s.labels[tracks[parent][1]] == parent).mean(0)
        kid = np.argwhere(s.labels[tracks[child][0]] == child).mean(0)
        assert np.linalg.norm(mom - kid) < 25
    entering = [k for k, (b, e, p) in tracks.items() if b > 0 and p == 0]
    divided = set(children.values())
    leaving = [k for k, (b, e, p) in tracks.items() if e < t - 1 and k not in divided]
    assert entering and leaving
    # motion and deformation of a long-lived cell
    k = next(k for k, (b, e, p) in tracks.items() if b == 0 and e == t - 1)
    c0 = np.argwhere(s.labels[0] == k).mean(0)
    c1 = np.argwhere(s.labels[-1] == k).mean(0)
    assert np.linalg.norm(c1 - c0) > 5
    areas = np.array([(s.labels[i] == k).sum() for i in range(t)])
    assert areas.std() / areas.mean() > 0.03
    # photobleaching: objects get dimmer
    per_frame = [s.image[i][s.labels[i] > 0].mean() - np.median(s.image[i][s.labels[i] == 0]) for i in range(t)]
    assert np.mean(per_frame[-5:]) < 0.9 * np.mean(per_frame[:5])


def test_timelapse_is_fast():
    syn.timelapse(n_frames=4)  # warm up imports
    t0 = time.perf_counter()
    syn.timelapse(n_frames=30, shape=(256, 256))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed


def test_random_scenes_vary():
    scenes = [syn.random_scene(i) for i in range(6)]
    assert len({s.image.dtype for s in scenes}) >= 2
    for s in scenes:
        assert s.image.shape == s.labels.shape == (256, 256) and s.labels.max() > 3
