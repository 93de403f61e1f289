"""Propagate of clicked objects through a division (issue #17): the bundled model on a small
drawn time-lapse where one cell (object 1) divides, its daughters moving apart from frame 2
on, next to a cell that does not (object 2). The real SAM 2 session follows both daughters
with the mother's mask; the session ends the mother and tracks two new ids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from app_fixtures import Prompt
from napari_sam.app.session import StackSession

SEPARATION = [0, 0, 6, 10, 13, 15]  # half the distance between the daughters; 0: one cell


def _frames(seed=0, H=96, W=96):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for s in SEPARATION:
        img = np.zeros((H, W))
        if s == 0:
            img += ((yy - 48) ** 2 / 11 ** 2 + (xx - 48) ** 2 / 14 ** 2) < 1
        else:
            for cx in (48 - s, 48 + s):
                img += ((yy - 48) ** 2 + (xx - cx) ** 2) < 9 ** 2
        img += ((yy - 20) ** 2 + (xx - 20) ** 2) < 8 ** 2
        out.append((ndi.gaussian_filter(img.clip(0, 1), 1.2) * 800 + 100 + rng.normal(0, 20, (H, W))).astype(np.uint16))
    return np.stack(out)


@pytest.fixture(scope="module")
def embedded():
    import napari_sam as ns

    return ns.load_model("embedded", device="cpu")


def _run(embedded, tmp_path, direction="forward", **kw):
    ss = StackSession(embedded, _frames(), cache_root=tmp_path, **kw)
    click = lambda x, y: Prompt(np.array([[x, y]], float), np.array([1]))  # noqa: E731
    ss.predict((), 0, 1, click(48, 48))
    ss.predict((), 0, 2, click(20, 20))
    out = {t: masks for t, masks, _ in ss.propagate_iter((), direction)}
    return ss, out


def test_a_splitting_mask_ends_the_mother_and_starts_two_daughters(embedded, tmp_path):
    ss, out = _run(embedded, tmp_path)
    assert sorted(out) == list(range(6))
    born = min(t for t, m in out.items() if 3 in m)
    assert ss.parents() == {3: 1, 4: 1}
    assert born == 3  # the first frame the mask is two well-separated parts
    for t, masks in out.items():
        assert 2 in masks and masks[2][20, 20] and not masks[2][48, 48]  # the other cell goes on
        if t < born:
            assert set(masks) == {1, 2} and masks[1][48, 48]
        else:
            assert set(masks) == {2, 3, 4}  # the mother ended on the frame before
            s = SEPARATION[t]
            a, b = masks[3], masks[4]
            assert ndi.label(a)[1] == 1 and ndi.label(b)[1] == 1 and not (a & b).any()
            assert a[48, 48 - s] and b[48, 48 + s]  # each daughter follows its own cell
            assert 150 < a.sum() < 400 and 150 < b.sum() < 400
    assert 1 not in ss.session().obj_ids and {3, 4} <= set(ss.session().obj_ids)
    # propagating again from the first frame finds no new division; no daughter before her birth
    again = {t: m for t, m, _ in ss.propagate_iter((), "forward", start=0)}
    assert ss.parents() == {3: 1, 4: 1}
    assert all(set(m) == {2} for t, m in again.items() if t < born)
    assert all({3, 4} <= set(m) for t, m in again.items() if t >= born)
    ss.close()


def test_without_divisions_the_object_keeps_one_id(embedded, tmp_path):
    ss, out = _run(embedded, tmp_path, divisions=False)
    assert all(set(m) == {1, 2} for m in out.values()) and ss.parents() == {}
    assert ndi.label(out[4][1])[1] == 2  # one id over both daughters
    ss.close()


def test_daughters_get_ids_beyond_the_callers_first_free_id(embedded, tmp_path):
    ss = StackSession(embedded, _frames(), cache_root=tmp_path)
    ss.first_free_id = lambda: 10  # e.g. the labels layer holds ids up to 9
    ss.predict((), 0, 1, Prompt(np.array([[48.0, 48.0]]), np.array([1])))
    list(ss.propagate_iter((), "both", start=0))
    assert ss.parents() == {10: 1, 11: 1}
    ss.close()


def test_a_backward_pass_finds_no_division(embedded, tmp_path):
    """Backward in time the daughters merge: prompted on both on the last frame, nothing branches."""
    ss = StackSession(embedded, _frames(), cache_root=tmp_path)
    ss.predict((), 5, 1, Prompt(np.array([[33.0, 48.0]]), np.array([1])))
    out = {t: m for t, m, _ in ss.propagate_iter((), "backward")}
    assert sorted(out) == list(range(6)) and all(set(m) == {1} for m in out.values()) and ss.parents() == {}
    ss.close()
