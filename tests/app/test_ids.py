"""Id policy: the next free id, automatic ids moved past those in use (or refused when they do
not fit), and centroids — the widget's Tracks layer and the command line's table alike."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam.app.ids import (
    TABLE_COLUMNS,
    centroid_tracks,
    next_free_id,
    object_centroids,
    shift_past,
    table_rows,
)


def test_next_free_id():
    labels = np.array([[0, 5], [2, 0]])
    assert next_free_id(labels) == 6
    assert next_free_id(labels, used=[9, 3]) == 10
    assert next_free_id(None, used=[4]) == 5
    assert next_free_id(None) == 1 and next_free_id(np.zeros((0, 3))) == 1


def test_shift_past_moves_ids_and_refuses_what_does_not_fit():
    slices = {(0,): np.array([[0, 1], [2, 2]]), (1,): np.array([[3, 0], [0, 0]])}
    out = shift_past(slices, 11, np.uint16)
    np.testing.assert_array_equal(out[(0,)], [[0, 11], [12, 12]])
    np.testing.assert_array_equal(out[(1,)], [[13, 0], [0, 0]])
    assert shift_past(slices, 253, np.uint8)[(1,)].max() == 255
    with pytest.raises(ValueError, match="ids up to 256 do not fit the labels' uint8"):
        shift_past(slices, 254, np.uint8)


def test_table_rows_are_the_trackers_own():
    from napari_sam.engine.auto.tracking import TRACK_COLUMNS, frame_rows

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (37, 53)).astype(np.int32)
    labels[labels == 4] = 0  # an id missing in between
    assert TABLE_COLUMNS == TRACK_COLUMNS
    ours, theirs = table_rows(3, labels), frame_rows(3, labels)
    assert [r[:2] for r in ours] == [(3, 1), (3, 2), (3, 3), (3, 5)]
    assert ours == [tuple(float(v) if isinstance(v, np.floating) else int(v) for v in r) for r in theirs]


def test_centroids_of_volumes_over_time():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (3, 5, 6, 7)).astype(np.int32)  # (Z, T, Y, X): the video axis is 1
    labels[:, 2][labels[:, 2] == 2] = 0  # object 2 absent on frame 2
    tracks = centroid_tracks(labels, video_axis=1)
    want = []
    for t in range(5):
        vol = labels[:, t]
        ids = [i for i in (1, 2, 3) if (vol == i).any()]
        want += [(i, t, *c) for i, c in zip(ids, ndi.center_of_mass(np.ones_like(vol), vol, ids))]
    np.testing.assert_allclose(tracks, np.asarray(want, float), rtol=0, atol=1e-9)
    only = centroid_tracks(labels, objects=[3], video_axis=1)
    np.testing.assert_array_equal(only, tracks[tracks[:, 0] == 3])
    assert centroid_tracks(np.zeros((2, 4, 4), int)).shape == (0, 4)
    assert object_centroids(np.array([[0, 7], [7, 7]])) == [(7, 2 / 3, 2 / 3, 3)]
