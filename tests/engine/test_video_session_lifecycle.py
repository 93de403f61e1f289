"""VideoSession edits while ``propagate`` runs: objects going away, reset, close.

A propagation is a generator the widget drives frame by frame; the user can remove an
object, clear a frame or close the session between two frames. The run then goes on with
the objects left, or ends cleanly when none is left to track.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import max_rel_err, perturb_
from napari_sam.engine.video.session import VideoSession
from napari_sam.models.sam2 import build_sam2, reduced_config
from video_reference import moving_blobs

T, H, W = 6, 48, 64
CLICKS = {1: [[15, 12]], 2: [[45, 30]], 3: [[30, 40]]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_sam2(reduced_config("2.1", image_size=128))
    return perturb_(m, seed=0, scale=0.06).eval()


@pytest.fixture(scope="module")
def frames():
    return moving_blobs(T, H, W)


def _session(model, frames, objs=(1,), **kw):
    s = VideoSession(model, frames, contrast_limits=(0, 255), fill_hole_area=0, **kw)
    for oid in objs:
        s.add_prompts(1, oid, points=CLICKS[oid], labels=[1])
    return s


_LAST_OBJECT_GOES = {
    "remove_object": lambda s: s.remove_object(1),
    "reset": lambda s: s.reset(),
    "clear_frame": lambda s: s.clear_frame(1),  # its only prompted frame
    "clear_frame_of_object": lambda s: s.clear_frame(1, obj_id=1),
    "close": lambda s: s.close(),
}


@pytest.mark.parametrize("direction", ["forward", "both"])
@pytest.mark.parametrize("action", sorted(_LAST_OBJECT_GOES))
def test_run_ends_cleanly_when_the_last_object_goes(model, frames, action, direction):
    s = _session(model, frames)
    seen = []
    for t, ids, logits in s.propagate(direction):
        seen.append((t, ids, logits.shape))
        if t == 2:
            _LAST_OBJECT_GOES[action](s)
    # frames 1 and 2 were tracked, then nothing: no error, no backward pass over nothing
    assert seen == [(1, [1], (1, H, W)), (2, [1], (1, H, W))]


@pytest.mark.parametrize("action", ["remove_object", "reset", "clear_frame"])
def test_session_works_again_after_the_run_ended(model, frames, action):
    s = _session(model, frames)
    for t, _, _ in s.propagate():
        if t == 2:
            _LAST_OBJECT_GOES[action](s)
    s.add_prompts(3, 7, points=[[20, 15]], labels=[1])
    out = list(s.propagate())
    assert [t for t, _, _ in out] == [3, 4, 5] and all(ids == [7] for _, ids, _ in out)


@pytest.mark.parametrize("cache_bytes", [0, 4 * 2**20])
def test_removing_one_of_several_objects_goes_on_with_the_others(model, frames, cache_bytes):
    ref = {t: logits for t, _, logits in _session(model, frames, (1, 2, 3)).propagate()}
    s = _session(model, frames, (1, 2, 3), projection_cache_bytes=cache_bytes)
    got = []
    for t, ids, logits in s.propagate():
        got.append((t, list(ids)))
        keep = [0, 1, 2] if t <= 2 else [0, 2]  # after the removal: the rows of objects 1 and 3
        assert max_rel_err(logits, ref[t][keep]) < 1e-5
        if t == 2:
            s.remove_object(2)
    assert got == [(1, [1, 2, 3]), (2, [1, 2, 3]), (3, [1, 3]), (4, [1, 3]), (5, [1, 3])]
    assert s.obj_ids == [1, 3]


def test_clearing_one_objects_prompts_mid_run_tracks_the_rest(model, frames):
    s = _session(model, frames, (1, 2))
    got = []
    for t, ids, _ in s.propagate():
        got.append((t, ids))
        if t == 2:
            s.clear_frame(1, obj_id=1)  # object 1 has no prompt left: no longer tracked
    assert got == [(1, [1, 2]), (2, [1, 2]), (3, [2]), (4, [2]), (5, [2])]


def test_a_closed_session_says_so(model, frames):
    s = _session(model, frames)
    folder = s._store.directory
    s.close()
    assert not os.path.exists(folder)
    with pytest.raises(ValueError, match="closed"):
        s.add_prompts(1, 1, points=[[20, 15]], labels=[1])
    with pytest.raises(ValueError, match="closed"):
        s.add_mask(1, 1, np.ones((H, W), bool))
    with pytest.raises(ValueError, match="closed"):
        s.propagate()
    s.close()  # closing twice is harmless
