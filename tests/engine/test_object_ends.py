"""Objects that end (issue 14): VideoSession's ``object_score_threshold`` / ``stop_after_absent``.

A z-stack where a nucleus ends and, after a few empty slices, another nucleus lies at the same
place (nuclei stacked in z): tracked with the bundled model from the first nucleus' first
slice. The model's own rule (object score < 0 blanks a slice) loses the first nucleus on the
empty slices, then takes up the second one; with ``stop_after_absent`` the first nucleus ends
where it ends."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns

Z, SIZE = 20, 128
FIRST, GAP, SECOND = range(0, 8), range(8, 12), range(12, Z)


@pytest.fixture(scope="module")
def model():
    return ns.load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def stack():
    """(Z, 128, 128) uint16: nucleus 1 on slices 0-7, none on 8-11, nucleus 2 on 12-19, both at
    the centre (radius 18 px), a neighbour nucleus at (30, 30) throughout; Poisson noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = lambda cy, cx, r: ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(float)
    img = np.full((Z, SIZE, SIZE), 20.0)
    labels = np.zeros((Z, SIZE, SIZE), np.int32)
    for z in range(Z):
        img[z] += 120 * disc(30, 30, 12)
        labels[z][disc(30, 30, 12) > 0] = 3
        if z in FIRST or z in SECOND:
            k = 1 if z in FIRST else 2
            img[z] += 150 * disc(64, 64, 18)
            labels[z][disc(64, 64, 18) > 0] = k
    return rng.poisson(img).astype(np.uint16), labels


def _track(model, frames, **kw):
    session = ns.VideoSession(model, frames, **kw)
    session.add_prompts(0, 1, points=np.array([[64.0, 64.0]]), labels=np.array([1]))
    masks = {t: logits[0] > 0 for t, _, logits in session.propagate("forward")}
    scores = [session.object_scores(t).get(1) for t in range(Z)]
    return session, masks, scores


def test_without_a_stop_the_mask_runs_on_into_the_next_nucleus(model, stack):
    frames, labels = stack
    session, masks, scores = _track(model, frames)
    first = labels == 1
    assert np.mean([(masks[z] & first[z]).sum() / (masks[z] | first[z]).sum() for z in FIRST]) > 0.8
    assert not any(masks[z].any() for z in GAP)  # the model says absent on the empty slices
    second = sum((masks[z] & (labels[z] == 2)).sum() for z in SECOND)
    assert second > 0.5 * (labels == 2).sum()  # ... then segments the other nucleus as this one
    assert all(scores[z] is not None for z in range(Z))
    session.close()


def test_stop_after_absent_ends_the_object_where_it_ends(model, stack):
    frames, labels = stack
    session, masks, scores = _track(model, frames, stop_after_absent=2)
    first = labels == 1
    assert np.mean([(masks[z] & first[z]).sum() / (masks[z] | first[z]).sum() for z in FIRST]) > 0.8
    assert not any(masks[z].any() for z in [*GAP, *SECOND])  # empty from the nucleus' end on
    assert sorted(masks) == list(range(Z))  # every slice is still yielded
    # slices after the end are not tracked: no object score, and they count as untracked
    assert [z for z in range(Z) if scores[z] is None] == list(range(GAP[0] + 2, Z))
    session.close()


def test_a_prompt_after_the_end_takes_the_object_up_again(model, stack):
    frames, labels = stack
    session = ns.VideoSession(model, frames, stop_after_absent=2)
    session.add_prompts(0, 1, points=np.array([[64.0, 64.0]]), labels=np.array([1]))
    session.add_prompts(15, 1, points=np.array([[64.0, 64.0]]), labels=np.array([1]))
    masks = {t: logits[0] > 0 for t, _, logits in session.propagate("forward")}
    assert not any(masks[z].any() for z in (12, 13, 14))  # ended after slices 8-9
    second = labels == 2
    for z in range(15, Z):
        assert (masks[z] & second[z]).sum() / (masks[z] | second[z]).sum() > 0.8, z
    session.close()


def test_a_threshold_blanks_tracked_slices_under_it_but_not_prompted_ones(model, stack):
    frames, _ = stack
    _, plain, scores = _track(model, frames)
    tracked = [s for z, s in enumerate(scores) if z in FIRST and z > 0]
    cut = float(np.median(tracked))
    session, masks, _ = _track(model, frames, object_score_threshold=cut)
    assert masks[0].any()  # the prompted slice is kept whatever its score
    for z in range(1, Z):
        expect = plain[z].any() and scores[z] >= cut
        assert masks[z].any() == expect, (z, scores[z], cut)
    session.close()


@pytest.mark.parametrize("kw,match", [
    ({"stop_after_absent": 0}, "stop_after_absent must be None or an int >= 1.*0"),
    ({"stop_after_absent": 1.5}, "stop_after_absent must be None or an int >= 1.*1.5"),
    ({"stop_after_absent": True}, "stop_after_absent must be None or an int >= 1.*True"),
    ({"object_score_threshold": "high"}, "object_score_threshold must be a number.*'high'"),
    ({"object_score_threshold": float("nan")}, "object_score_threshold must be finite.*nan"),
])
def test_bad_end_settings_are_refused_naming_them(model, kw, match):
    with pytest.raises(ValueError, match=match):
        ns.VideoSession(model, np.zeros((3, 32, 32), np.uint8), **kw)
