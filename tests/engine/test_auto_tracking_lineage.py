"""Divisions, gap closing and cells leaving in the automatic tracker (``AutoTracker``).

The exact logic runs against constructed movies with a detector that is right by construction
(the ground truth) and ``LineageOracle``, a stand-in for the SAM 2 session that does what SAM 2
does at a division: an object prompted on a cell returns that cell *and all its descendants*
(the mother's mask covers both daughters), and, optionally, a small sliver at the border
after its cell has left the field (what SAM 2 leaves there). Everything else (splits, gap
matching, leaving, restarts, ids, parents, lineage) is the real code. The last test runs the
real bundled SAM 2 model on a small generated time-lapse with a division.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams
from napari_sam.lineage import Lineage


class LineageOracle:
    """``follow_one``: from the frames listed on, a mother's mask is her first daughter only
    (SAM 2 keeping one daughter of two). A click prompt (``add_prompts``) returns the cell
    under the first positive click, alone."""

    def __init__(self, truth, lineage=None, sliver_after_leaving=False, follow_one=()):
        self.truth = truth
        self.lineage = dict(lineage or {})
        self.sliver = sliver_after_leaving
        self.follow_one = set(follow_one)
        self.cell: dict[int, int] = {}
        self.last_border: dict[int, tuple[int, int]] = {}
        self.alone: set[int] = set()
        self.calls = []

    @property
    def obj_ids(self):
        return list(self.cell)

    def family(self, g):
        out, todo = {g}, [g]
        while todo:
            m = todo.pop()
            kids = [d for d, p in self.lineage.items() if p == m]
            out.update(kids)
            todo.extend(kids)
        return list(out)

    def add_mask(self, t, obj_id, mask):
        labels, counts = np.unique(self.truth[t][mask], return_counts=True)
        if obj_id in self.cell:  # re-prompted with one cell's mask: it follows that cell alone
            self.alone.add(obj_id)
        self.cell[obj_id] = int(labels[np.argmax(counts)])
        self.calls.append(("add", t, obj_id))

    def add_prompts(self, t, obj_id, points=None, labels=None, box=None, clear=True):
        (x, y), = [p for p, lab in zip(points, labels) if lab == 1][:1]
        g = int(self.truth[t][int(round(y)), int(round(x))])
        self.cell[obj_id] = g
        self.alone.add(obj_id)
        self.calls.append(("click", t, obj_id))
        return np.where((self.truth[t] == g) & (g > 0), 1.0, -1.0)

    def remove_object(self, obj_id):
        del self.cell[obj_id]
        self.calls.append(("remove", obj_id))

    def _mask(self, t, i):
        cells = [self.cell[i]] if i in self.alone else self.family(self.cell[i])
        if t in self.follow_one and i not in self.alone:
            kids = sorted(d for d, p in self.lineage.items() if p == self.cell[i])
            cells = kids[:1] if kids and not (self.truth[t] == self.cell[i]).any() else cells
        m = np.isin(self.truth[t], cells)
        if self.sliver:
            if m.any():
                ys, xs = np.nonzero(m)
                self.last_border[i] = (int(ys.mean()), int(np.clip(xs.max(), 0, m.shape[1] - 1)))
            elif i in self.last_border:  # a few pixels stay at the border where it left
                y, x = self.last_border[i]
                if x >= m.shape[1] - 3:
                    m[y - 2:y + 3, -2:] = True
        return m

    def propagate(self, direction="forward", start=0):
        self.calls.append(("propagate", start))
        ids = list(self.cell)
        for t in range(start, len(self.truth)):
            yield t, ids, np.stack([np.where(self._mask(t, i), 1.0, -1.0) for i in ids])


def disc(shape, cy, cx, r):
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def division_movie(T=10, touch=(4, 5)):
    """Cell 1 divides into 3 and 4 on frame 4 (touching on ``touch`` frames, then apart);
    cell 2 stays put far away."""
    shape = (48, 72)
    lab = np.zeros((T,) + shape, np.int32)
    for t in range(T):
        lab[t][disc(shape, 38, 60, 5)] = 2
        if t < 4:
            lab[t][disc(shape, 20, 30, 7)] = 1
        else:
            half = 5 if t in touch else 5 + 2 * (t - max(touch))
            lab[t][disc(shape, 20, 30 - half, 5)] = 3
            lab[t][disc(shape, 20, 30 + half, 5)] = 4
    return lab, {3: 1, 4: 1}


def track(truth, params, lineage=None, sliver=False, n=None, follow_one=()):
    oracle = LineageOracle(truth, lineage, sliver, follow_one)
    tracker = AutoTracker(None, params, detect=lambda t, frame: truth[t], make_session=lambda stack: oracle)
    out = list(tracker.run(np.zeros(truth.shape, np.uint8)))
    assert [t for t, _ in out] == list(range(len(truth)))
    return tracker, np.stack([lab for _, lab in out]), oracle


def ids_of(pred, truth, g):
    """The predicted id covering most of true cell ``g`` on each frame it is in (0: none)."""
    return [int(np.bincount(pred[t][truth[t] == g]).argmax()) for t in range(len(truth)) if (truth[t] == g).any()]


def test_division_from_the_tracks_own_mask():
    truth, lin = division_movie()
    tracker, pred, oracle = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0), lin)
    # the mother's mask covers both touching daughters on frames 4-5; they are 3 px apart on 6:
    # the split is seen on 6, the division placed back on 4, the true frame (the waist rule,
    # off here, would see it on 4 already: test_auto_tracking_sister)
    assert tracker.parents == {3: 1, 4: 1}
    assert (pred[:4] == 1).sum() > 0 and not (pred[4:] == 1).any()
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    assert ids_of(pred, truth, 2) == [2] * 10
    assert ("remove", 1) in oracle.calls and ("add", 6, 3) in oracle.calls and ("add", 6, 4) in oracle.calls
    assert tracker.lineage().rows() == [(1, 0, 3, 0), (2, 0, 9, 0), (3, 4, 9, 1), (4, 4, 9, 1)]
    assert tracker.new_objects == {1: 0, 2: 0, 3: 4, 4: 4}
    for t in (4, 5):  # the mother's pixels shared between the touching daughters
        for d in (3, 4):
            a, b = pred[t] == d, truth[t] == d
            assert (a & b).sum() / (a | b).sum() > 0.85, (t, d)
    rows = {(int(r[0]), int(r[1])) for r in tracker.rows}  # the tracks table says the same
    assert (4, 3) in rows and (5, 4) in rows and not any(k == 1 and f >= 4 for f, k in rows)


def test_division_without_lookback_is_placed_where_seen():
    truth, lin = division_movie()
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10, division_lookback=0), lin)
    assert tracker.lineage().rows() == [(1, 0, 5, 0), (2, 0, 9, 0), (3, 6, 9, 1), (4, 6, 9, 1)]


def test_a_division_seen_in_two_pieces_first_is_compared_with_the_uncut_mother():
    # the daughters touch on 4-5; on 6 they are 1 px apart (two pieces, too close for a
    # split: the track keeps its largest region, one daughter); they part on 7. The mother's
    # mask on 6 cut to one daughter is under the daughters' sum; its uncut mask (both pieces)
    # is their sum: the division is found and placed on 4, not turned down as a swallow
    truth, lin = division_movie()
    shape = truth.shape[1:]
    for t, half in ((6, 6), (7, 9), (8, 11), (9, 13)):
        truth[t] = np.where(disc(shape, 38, 60, 5), 2, 0)
        truth[t][disc(shape, 20, 30 - half, 5)] = 3
        truth[t][disc(shape, 20, 30 + half, 5)] = 4
    gap = np.flatnonzero(~(truth[6] > 0).any(0)[19:42]) + 19
    assert list(gap) == [30]  # one empty column between the pieces on frame 6
    cut = max((truth[6] == 3).sum(), (truth[6] == 4).sum())
    assert cut < TrackingParams().division_cover * ((truth[7] == 3).sum() + (truth[7] == 4).sum())
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10), lin)
    assert tracker.parents == {3: 1, 4: 1}
    assert tracker.lineage().rows() == [(1, 0, 3, 0), (2, 0, 9, 0), (3, 4, 9, 1), (4, 4, 9, 1)]
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    for d in (3, 4):  # on frame 6 each daughter has its own piece (the cut one came back)
        a, b = pred[6] == d, truth[6] == d
        assert (a & b).sum() / (a | b).sum() > 0.9, d


def swallow_movie(T=10):
    """Cell 1 (r 5) alone until frame 3; from frame 4 a neighbour, cell 5, sits against it
    (touching on frames 4-5, then moving away 2 px a frame); the stand-in session's mask of
    cell 1 takes it over (``lineage`` {5: 1} makes the oracle cover it). Cell 2 far away."""
    shape = (48, 72)
    lab = np.zeros((T,) + shape, np.int32)
    for t in range(T):
        lab[t][disc(shape, 38, 60, 5)] = 2
        lab[t][disc(shape, 20, 25, 5)] = 1
        if t >= 4:
            lab[t][disc(shape, 20, 36 + 2 * max(t - 5, 0), 5)] = 5
    return lab, {5: 1}


@pytest.mark.parametrize("lookback, divides", [(4, False), (0, True)])
def test_a_mask_that_swallowed_a_neighbour_is_no_division(lookback, divides):
    truth, lin = swallow_movie()
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10, division_lookback=lookback), lin)
    # the parts part on frame 6; looking back, the mask was one cell's size on frame 3 and
    # doubled on 4: it took over a neighbour (without the look-back it looks like a division)
    assert bool(tracker.parents) is divides
    if not divides:
        assert ids_of(pred, truth, 1) == [1] * 10
        # the split is still made (separate_rejected): the neighbour is a new object, no
        # parent, from the first frame the mask covered it (4), not where the split was seen
        assert ids_of(pred, truth, 5) == [3] * 6 and tracker.new_objects[3] == 4


def test_a_rejected_split_left_whole_without_separate_rejected():
    truth, lin = swallow_movie()
    params = TrackingParams(every=0, min_area=10, separate_rejected=False)
    tracker, pred, _ = track(truth, params, lin)
    # one mask over two cells, under the mother's id, until the split is seen (and turned
    # down) on frame 6; from then on only the mother's largest region stays
    assert tracker.parents == {}
    assert ids_of(pred, truth, 5)[:2] == [1, 1] and 3 not in tracker.new_objects


def test_division_from_redetection_finds_the_exact_frame():
    truth, lin = division_movie()
    tracker, pred, _ = track(truth, TrackingParams(every=4, min_area=10), lin)
    assert tracker.parents == {3: 1, 4: 1}
    assert tracker.lineage().rows() == [(1, 0, 3, 0), (2, 0, 9, 0), (3, 4, 9, 1), (4, 4, 9, 1)]
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6


def test_no_division_when_divisions_are_off():
    truth, lin = division_movie()
    tracker, pred, _ = track(truth, TrackingParams(every=4, min_area=10, divisions=False), lin)
    assert tracker.parents == {} and set(np.unique(pred[6:])) == {0, 1, 2}  # one region of the two


def test_unequal_parts_are_not_a_division():
    truth, lin = division_movie()
    truth[:, 15:26, 40:50] = np.where(truth[:, 15:26, 40:50] == 4, 0, truth[:, 15:26, 40:50])
    small = (truth == 4).sum((1, 2))
    truth[truth == 4] = 0  # daughter 4 replaced by a speck of 9 px
    for t in range(4, 10):
        truth[t, 20:23, 40:43] = 4
    assert small[6] > 50
    tracker, _, _ = track(truth, TrackingParams(every=4, min_area=5), lin)
    assert tracker.parents == {}


def gap_movie(gap=2, jump=3.0, T=12):
    """Cell 1 until frame 3, gone for ``gap`` frames, then back ``jump`` px away as label 5
    (so the session, which follows label 1, has lost it); cell 2 stays."""
    shape = (48, 72)
    lab = np.zeros((T,) + shape, np.int32)
    for t in range(T):
        lab[t][disc(shape, 38, 60, 5)] = 2
        if t <= 3:
            lab[t][disc(shape, 20, 20 + t, 6)] = 1
        elif t > 3 + gap:
            lab[t][disc(shape, 20, 23 + jump + (t - 4 - gap), 6)] = 5
    return lab


@pytest.mark.parametrize("gap, jump, max_gap, same", [
    (2, 3.0, 3, True),    # found again within max_gap frames, nearby: the id comes back
    (2, 3.0, 0, False),   # gap closing off: a new id
    (2, 25.0, 3, False),  # too far from where it was lost
    (5, 3.0, 3, False),   # lost for too long: its track had ended
])
def test_gap_closing(gap, jump, max_gap, same):
    truth = gap_movie(gap, jump)
    back = 4 + gap
    every = back  # a re-detection on the frame it comes back
    tracker, pred, oracle = track(truth, TrackingParams(every=every, min_area=10, max_gap=max_gap))
    ids = ids_of(pred, truth, 5)
    assert len(set(ids)) == 1 and ids[0] != 0
    assert (ids[0] == 1) is same
    assert not (pred[4:back] == 1).any()
    if same:
        assert sorted(tracker.new_objects) == [1, 2]
        # CTC: a gap splits the track; the later run continues the earlier one
        assert tracker.lineage().rows() == [(1, 0, 3, 0), (2, 0, 11, 0), (3, back, 11, 1)]
    else:
        assert ids[0] == 3 and tracker.new_objects[3] == back
    if 0 < max_gap < gap:
        assert ("remove", 1) in oracle.calls  # ended after max_gap empty frames


def leaving_movie(T=14):
    """Cell 1 moves right by 4 px a frame and leaves through the right border (gone from frame 10);
    cell 2 stays."""
    shape = (48, 72)
    lab = np.zeros((T,) + shape, np.int32)
    for t in range(T):
        lab[t][disc(shape, 38, 20, 5)] = 2
        lab[t][disc(shape, 15, 40 + 4 * t, 6)] = 1
    return lab


def test_a_cell_leaving_ends_its_track():
    truth = leaving_movie()
    gone = [t for t in range(len(truth)) if not (truth[t] == 1).any()]
    assert gone[0] == 10
    on, pred_on, oracle = track(truth, TrackingParams(every=0, min_area=5), sliver=True)
    off, pred_off, _ = track(truth, TrackingParams(every=0, min_area=5, leaving=False), sliver=True)
    # without the rule the SAM 2-like sliver stays under the id on every frame after it left
    assert all((pred_off[t] == 1).sum() > 0 for t in gone)
    # with it the track ends: no pixel of id 1 once the cell is gone, and it was removed
    assert not (pred_on[gone] == 1).any() and ("remove", 1) in oracle.calls
    assert on.lineage()[1].end < gone[0] and on.lineage()[2].end == len(truth) - 1
    # while the cell is mostly in view it keeps its id
    mostly = [t for t in range(len(truth)) if (truth[t] == 1).sum() >= 0.6 * (truth[0] == 1).sum()]
    assert all((pred_on[t][truth[t] == 1] == 1).all() for t in mostly)


def test_ids_never_reused_and_lineage_valid_on_a_generated_movie():
    from napari_sam.data import synthetic

    movie = synthetic.timelapse(n_frames=24, shape=(128, 128), n_objects=8, seed=11, enter_rate=0.3)
    truth = movie.labels
    tracker, pred, oracle = track(truth, TrackingParams(every=3, min_area=10), movie.lineage, sliver=True)
    lineage = tracker.lineage()  # validates: parents end before daughters begin, no cycles
    assert isinstance(lineage, Lineage) and set(tracker.parents) <= set(tracker.new_objects)
    firsts = [tracker.new_objects[i] for i in sorted(tracker.new_objects)]
    assert firsts == sorted(firsts)  # ids are handed out in time order, never twice
    ended = {c[1] for c in oracle.calls if c[0] == "remove"}
    for i in ended:  # a removed id never comes back after its last frame
        last = max(t for t in range(len(pred)) if (pred[t] == i).any()) if (pred == i).any() else -1
        removed_at = max(k for k, c in enumerate(oracle.calls) if c == ("remove", i))
        later_props = [c[1] for c in oracle.calls[removed_at:] if c[0] == "propagate"]
        assert not later_props or last < min(later_props), i
    # every true division whose mother was tracked is found, with the right parents
    divisions = {m: [d for d, p in movie.lineage.items() if p == m] for m in set(movie.lineage.values()) if m}
    right = 0
    for m, kids in divisions.items():
        mom = {i for i in ids_of(pred, truth, m) if i}
        kid_ids = [ids_of(pred, truth, d)[-1] for d in kids]
        if len(mom) == 1 and all(tracker.parents.get(k) == next(iter(mom)) for k in kid_ids):
            right += 1
    assert divisions and right >= len(divisions) - 1, (right, divisions, tracker.parents)


def test_real_bundled_model_follows_a_division():
    """The bundled SAM 2 model tracks a small generated time-lapse (cell 3 divides into 8 and 9
    on frame 4); the detector is the ground truth, re-detecting every 2 frames."""
    import napari_sam as ns
    from napari_sam.data import synthetic

    movie = synthetic.timelapse(n_frames=8, shape=(96, 96), n_objects=3, seed=1, division_time=(4, 6), enter_rate=0.0)
    truth = movie.labels
    assert movie.lineage[8] == 3 and movie.lineage[9] == 3 and not (truth[4:] == 3).any()
    model = ns.load_model("embedded", device="cpu")
    tracker = AutoTracker(model, TrackingParams(every=2, min_area=10), detect=lambda t, frame: truth[t])
    pred = np.stack([lab for _, lab in tracker.run(movie.image)])
    mother = {i for i in ids_of(pred[:4], truth[:4], 3)}
    assert len(mother) == 1 and 0 not in mother
    (mom,) = mother
    daughters = [ids_of(pred[4:], truth[4:], d)[0] for d in (8, 9)]
    assert daughters[0] != daughters[1] and all(tracker.parents.get(d) == mom for d in daughters)
    assert not (pred[4:] == mom).any()  # the mother track ended on frame 3
    lineage = tracker.lineage()
    assert lineage.divisions()[mom] == tuple(sorted(daughters)) and lineage[mom].end == 3
    assert all(lineage[d].begin == 4 for d in daughters)
    firsts = [tracker.new_objects[i] for i in sorted(tracker.new_objects)]
    assert firsts == sorted(firsts)  # ids handed out in time order, never reused
