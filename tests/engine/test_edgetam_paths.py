"""EdgeTAM (issue #15) through every engine path exactly as SAM 2.1: the image predictor
(click, box, mask feedback, tiles), the EmbeddingStore (refused across EdgeTAM / SAM 2.1),
VideoSession over a store, segment everything (point grid) and automatic tracking.

The model is the whole EdgeTAM (1024 px input, official shapes) at random init, written as an
official-format checkpoint ``{"model": state_dict}`` and loaded the way a user does:
``ns.load_model("edgetam", checkpoint=path)``. Frames are small (64 px) so each encode is a
few seconds on one CPU thread. SAM 2.1's figures to compare with are its architecture's
(sam2.1_hiera_tiny at 1024 px: the same three feature levels and shapes).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.data import synthetic

#: What a SAM 2.1 model's ImagePredictor.embedding() holds at 1024 px (any size of SAM 2.1).
SAM21_LEVELS = {"image_embed": (1, 256, 64, 64), "high_res_s0": (1, 32, 256, 256), "high_res_s1": (1, 64, 128, 128)}


@pytest.fixture(scope="module")
def edgetam(tmp_path_factory):
    """The whole EdgeTAM (random weights) from an official-format checkpoint."""
    from napari_sam.models.edgetam import EDGETAM_CONFIG, build_edgetam

    path = tmp_path_factory.mktemp("edgetam_paths") / "edgetam.pt"
    torch.manual_seed(3)
    state = build_edgetam(config=EDGETAM_CONFIG).state_dict()
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 10.0  # objects stay present (random weights)
    torch.save({"model": state}, path)
    return ns.load_model("edgetam", checkpoint=path, device="cpu")


def _sam21_tiny(path):
    from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2

    torch.manual_seed(1)
    torch.save({"model": build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"]).state_dict()}, path)
    return ns.load_model("sam2.1_hiera_tiny", checkpoint=path, device="cpu")


@pytest.fixture(scope="module")
def movie():
    return synthetic.timelapse(n_frames=4, shape=(64, 64), n_objects=4, seed=1, enter_rate=0.0)


def _centre(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_edgetam_from_a_checkpoint_is_a_1024_px_sam2(edgetam):
    from napari_sam.engine.image.family import Sam2Transform, transform_for

    assert edgetam.name == "edgetam" and edgetam.config.name == "edgetam" and edgetam.family == "sam2"
    assert edgetam.image_size == 1024 and not edgetam.training
    t = transform_for(edgetam)
    assert isinstance(t, Sam2Transform) and t.image_size == 1024


def test_click_box_and_mask_feedback_give_sam21_shaped_results(edgetam, movie):
    image = movie.image[0]  # uint16
    pred = ns.ImagePredictor(edgetam)
    pred.set_image(image)
    emb = pred.embedding()
    assert {k: tuple(v.shape) for k, v in emb.items()} == SAM21_LEVELS
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in emb.values())
    cell = movie.labels[0] == np.bincount(movie.labels[0][movie.labels[0] > 0]).argmax()
    click = _centre(cell)
    res = pred.predict(points=click[None], labels=np.array([1]))
    assert res.masks.shape == (3, 64, 64) and res.masks.dtype == bool
    assert res.scores.shape == (3,) and res.logits.shape == (3, 256, 256)
    assert np.isfinite(res.logits).all() and np.isfinite(res.scores).all()
    assert len({lg.tobytes() for lg in res.logits}) == 3  # three different candidates
    one = pred.predict(points=click[None], labels=np.array([1]), multimask=False)
    assert one.masks.shape == (1, 64, 64) and one.logits.shape == (1, 256, 256)
    again = pred.predict(points=click[None], labels=np.array([1]), multimask=False)
    np.testing.assert_array_equal(again.logits, one.logits)  # deterministic
    ys, xs = np.nonzero(cell)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], float)
    boxed = pred.predict(box=box, multimask=False)
    assert boxed.masks.shape == (1, 64, 64) and not np.array_equal(boxed.logits, one.logits)
    fed = pred.predict(points=click[None], labels=np.array([1]), mask_logits=one.logits[0][None], multimask=False)
    assert fed.masks.shape == (1, 64, 64) and not np.array_equal(fed.logits, one.logits)
    # the stored embedding decodes to the same numbers (what the widget does on a cached frame)
    other = ns.ImagePredictor(edgetam)
    other.set_embedding(emb, image.shape)
    np.testing.assert_array_equal(other.predict(points=click[None], labels=np.array([1]), multimask=False).logits,
                                  one.logits)


def test_tiled_click_is_its_tiles_own_prediction(edgetam, movie):
    """tile_shape/halo: a click is answered in the tile whose core holds it, with the whole
    image's contrast: the same numbers as the predictor on that tile's outer window."""
    from napari_sam.engine.image.tiled import whole_image_limits

    image = movie.image[0][:, :48].copy()  # (64, 48): two tiles of 32 x 48 (+ 8 px halo)
    pred = ns.ImagePredictor(edgetam, tile_shape=(32, 48), halo=(8, 8))
    pred.set_image(image)
    assert len(pred.grid) == 2
    tile = pred.grid[0]
    click = np.array([24.0, 12.0])  # x, y inside the first core, far from the second tile
    assert tile.contains(click[1], click[0])
    res = pred.predict(points=click[None], labels=np.array([1]), multimask=False)
    assert res.masks.shape == (1, 64, 48) and res.logits.shape == (1, 256, 256)
    ys, xs = tile.outer_slices
    crop = ns.ImagePredictor(edgetam)
    crop.set_image(image[ys, xs], contrast_limits=whole_image_limits(image))
    own = crop.predict(points=(click - [xs.start, ys.start])[None], labels=np.array([1]), multimask=False)
    np.testing.assert_allclose(res.logits, own.logits, atol=1e-4, rtol=0)
    assert np.array_equal(res.masks[0][ys, xs], own.masks[0]) and not res.masks[0][ys.stop:].any()


def test_store_names_edgetam_and_is_refused_across_families(edgetam, movie, tmp_path):
    sam21 = _sam21_tiny(tmp_path / "sam21_tiny.pt")
    frames = movie.image[:2]
    for maker, opener in ((edgetam, sam21), (sam21, edgetam)):
        path = tmp_path / f"{maker.name}.zarr"
        store = ns.EmbeddingStore(path, maker, frames)
        assert store.model_name == maker.name
        with pytest.raises(ValueError) as err:
            ns.EmbeddingStore(path, opener, frames)
        msg = str(err.value)
        assert f"store has {maker.name!r}, asked for {opener.name!r}" in msg, msg
        assert ns.EmbeddingStore(path, maker, frames).model_name == maker.name  # nothing lost


def test_video_session_over_an_edgetam_store_equals_one_without(edgetam, movie, tmp_path):
    frames = movie.image[:2]
    store = ns.EmbeddingStore(tmp_path / "e.zarr", edgetam, frames)
    assert store.precompute() == 2 and store.is_complete()
    assert {k: tuple(v) for k, v in store.levels.items()} == {k: s[1:] for k, s in SAM21_LEVELS.items()}
    cell = movie.labels[0] == np.bincount(movie.labels[0][movie.labels[0] > 0]).argmax()
    runs = []
    for emb in (None, store):
        s = ns.VideoSession(edgetam, frames, embeddings=emb)
        first = s.add_prompts(0, 1, points=_centre(cell)[None], labels=np.array([1]))
        s.add_mask(0, 2, movie.labels[0] == np.unique(movie.labels[0])[-1])
        out = [(t, list(ids), lg) for t, ids, lg in s.propagate()]
        runs.append((first, out))
        s.close()
    (a_first, a), (b_first, b) = runs
    assert a_first.shape == (64, 64) and a_first.dtype == np.float32
    np.testing.assert_allclose(b_first, a_first, atol=1e-5, rtol=0)
    assert [(t, ids) for t, ids, _ in a] == [(0, [1, 2]), (1, [1, 2])]
    for (_, _, la), (_, _, lb) in zip(a, b):
        assert la.shape == (2, 64, 64) and la.dtype == np.float32 and np.isfinite(la).all()
        np.testing.assert_allclose(lb, la, atol=1e-4, rtol=0)
    mask_obj = a[1][2][1] > 0  # the mask-prompted object, carried onto frame 1
    assert mask_obj.any() and not np.array_equal(mask_obj, a[0][2][1] > 0)


def _point_grid(model):
    return ns.AutomaticSegmenter(model, points_per_side=4, points_per_batch=16, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, min_mask_region_area=4, max_mask_fraction=1.0)


def test_segment_everything_with_edgetam(edgetam, movie):
    seg = _point_grid(edgetam)
    labels = seg.generate(movie.image[0])
    assert labels.shape == (64, 64) and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    assert len(ids) >= 1 and ids.tolist() == list(range(1, len(ids) + 1))


def test_auto_tracker_with_edgetam_tracks_a_time_lapse(edgetam, movie):
    from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams

    tracker = AutoTracker(edgetam, TrackingParams(every=0, min_area=4, forget_after=None),
                          segmenter=_point_grid(edgetam), divisions=False)
    out = list(tracker.run(movie.image[:3]))
    assert [t for t, _ in out] == [0, 1, 2]
    pred = np.stack([lab for _, lab in out])
    assert pred.shape == (3, 64, 64) and pred.dtype == np.int32
    assert tracker.new_objects and set(tracker.new_objects.values()) == {0}  # detected on frame 0 only
    assert set(np.unique(pred)) <= {0, *tracker.new_objects}
    assert (pred[1:] > 0).any()  # objects found on frame 0 are carried onto later frames
    assert tracker.parents == {}
