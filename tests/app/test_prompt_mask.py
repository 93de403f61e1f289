"""Prompt -> best mask: one click asks for three masks and keeps the best, a box or several
clicks one mask; overlapping objects go to the mask the model is surest of."""

from __future__ import annotations

import numpy as np
import pytest
from app_fixtures import Prompt, centre_click, small  # noqa: F401

from napari_sam.app.prompt_mask import MaskChoice, best_mask, paint, segment_objects, wants_multimask


@pytest.fixture(scope="module")
def predictor(small):
    from napari_sam.engine.image.predictor import ImagePredictor

    pred = ImagePredictor(small["model"])
    pred.set_image(small["movie"].image[0])
    return pred


def test_when_to_ask_for_three_masks():
    one = np.array([[3.0, 4.0]])
    assert wants_multimask(one, None)
    assert not wants_multimask(np.vstack([one, one]), None)
    assert not wants_multimask(one, np.array([0, 0, 5, 5]))
    assert not wants_multimask(None, np.array([0, 0, 5, 5]))


def test_one_click_keeps_the_best_of_three(small, predictor):
    pts, lab = centre_click(small["movie"].labels[0])
    res = predictor.predict(pts, lab, multimask=True)
    assert len(res.scores) == 3
    choice = best_mask(predictor, pts, lab)
    k = int(np.argmax(res.scores))
    np.testing.assert_array_equal(choice.mask, res.masks[k])
    assert choice.score == pytest.approx(float(res.scores[k]))
    assert choice.object_score == pytest.approx(float(np.asarray(res.object_scores).ravel()[0]))


def test_a_box_or_two_clicks_give_one_mask(small, predictor):
    box = np.array([5.0, 5.0, 30.0, 25.0])
    np.testing.assert_array_equal(best_mask(predictor, box=box).mask,
                                  predictor.predict(box=box, multimask=False).masks[0])
    pts = np.array([[10.0, 10.0], [40.0, 30.0]])
    lab = np.array([1, 0])
    np.testing.assert_array_equal(best_mask(predictor, pts, lab).mask,
                                  predictor.predict(pts, lab, multimask=False).masks[0])


def test_overlaps_go_to_the_higher_predicted_iou():
    a = np.zeros((4, 6), bool)
    a[:, :4] = True
    b = np.zeros((4, 6), bool)
    b[:, 2:] = True
    for order in ((1, 2), (2, 1)):
        choices = {1: MaskChoice(a, 0.9, None), 2: MaskChoice(b, 0.5, None)}
        labels = paint((4, 6), {k: choices[k] for k in order})
        assert labels.dtype == np.int32
        assert (labels[:, :4] == 1).all() and (labels[:, 4:] == 2).all()


def test_segment_objects_reads_prompt_file_entries(small, predictor):
    pts, _ = centre_click(small["movie"].labels[0])
    objects = {7: {"points": [tuple(pts[0])], "labels": [1], "box": None},
               3: {"points": [], "labels": [], "box": (0.0, 0.0, 20.0, 20.0)}}
    labels = segment_objects(predictor, objects, (48, 64))
    seven = best_mask(predictor, pts, np.array([1]))
    three = best_mask(predictor, box=(0.0, 0.0, 20.0, 20.0))
    np.testing.assert_array_equal(labels, paint((48, 64), {7: seven, 3: three}))
    assert set(np.unique(labels)) <= {0, 3, 7} and (labels == 7).any()


def test_a_session_on_one_image_gives_the_best_mask(small, tmp_path):
    from napari_sam.app.session import StackSession

    image = small["movie"].image[0]
    s = StackSession(small["model"], image, cache_root=tmp_path)
    assert not s.video and s.n_frames == 1
    pts, lab = centre_click(small["movie"].labels[0])
    mask, score = s.predict((), 0, 1, Prompt(pts, lab))
    from napari_sam.engine.image.predictor import ImagePredictor

    pred = ImagePredictor(small["model"])
    pred.set_frame(s.store(()), 0)
    choice = best_mask(pred, pts, lab)
    np.testing.assert_array_equal(mask, choice.mask)
    assert score == pytest.approx(choice.object_score)
    s.close()
