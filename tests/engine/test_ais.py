"""AIS post-processing (engine/auto/ais.py) and AisSegmenter vs micro-sam 1.8.14.

Golden outputs: tests/golden/ais_reference.npz (tests/golden/make_ais_golden.py). Labels are
compared after relabelling: ids matched one-to-one by overlap, the share of pixels whose
matched ids agree must be >= 99.9 %."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import max_rel_err
from golden.make_ais_golden import (GOLDEN, PARAM_SETS, decoder_state, microsam_labels, sample_image,
                                    synthetic_maps, tiny_sam1)

from napari_sam.engine.auto.ais import AisParams, AisSegmenter, ais_labels

HAVE_MICROSAM = all(importlib.util.find_spec(m) is not None for m in ("micro_sam", "torch_em"))
needs_microsam = pytest.mark.skipif(not HAVE_MICROSAM, reason="micro-sam / torch_em not installed "
                                    "(they need torchvision); the golden tests cover CI")


def agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    """Share of pixels that agree once ids are matched one-to-one (largest overlaps first;
    background only ever matches background)."""
    assert ours.shape == ref.shape
    pairs, counts = np.unique(np.stack([ref.ravel(), ours.ravel()]), axis=1, return_counts=True)
    used_ref, used_ours, agree = set(), set(), 0
    for i in np.argsort(-counts, kind="stable"):
        r, o = int(pairs[0, i]), int(pairs[1, i])
        if (r == 0) != (o == 0) or r in used_ref or o in used_ours:
            continue
        used_ref.add(r)
        used_ours.add(o)
        agree += int(counts[i])
    return agree / ref.size


def test_agreement_measures_what_it_says():
    a = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    assert agreement(a * 7 % 5, a) == 1.0  # renamed ids agree fully
    merged = np.where(a > 0, 1, 0)
    assert agreement(merged, a) == 0.75  # 2 merged into 1: background and id 2 match, id 1 not


@pytest.mark.parametrize("i", range(len(PARAM_SETS)))
def test_labels_equal_microsam_golden(i):
    g = np.load(GOLDEN)
    np.testing.assert_array_equal(synthetic_maps(), g["synthetic_maps"])  # the inputs are rebuilt
    ref = g[f"synthetic_labels_{i}"]
    ours = ais_labels(*g["synthetic_maps"].astype(np.float32), **PARAM_SETS[i])
    assert ours.dtype == np.int32 and ours.max() == ref.max() > 10
    assert agreement(ours, ref) >= 0.999
    assert sorted(np.unique(ours)) == list(range(ours.max() + 1))  # ids 1..n


def test_labels_of_decoder_maps_equal_microsam_golden():
    g = np.load(GOLDEN)
    ours = ais_labels(*g["maps"])
    assert ours.max() == g["labels_of_maps"].max() >= 2
    assert agreement(ours, g["labels_of_maps"]) >= 0.999


@needs_microsam
@pytest.mark.parametrize("seed", [1, 2])
def test_labels_equal_microsam_live(seed):
    maps = synthetic_maps(seed, shape=(192, 160), n=40).astype(np.float32)
    for params in PARAM_SETS + ({"foreground_threshold": 0.6, "boundary_distance_threshold": 0.35,
                                 "foreground_smoothing": 2.3},):
        ref = microsam_labels(maps, **params)
        ours = ais_labels(*maps, **params)
        assert ours.max() == ref.max() > 10
        assert agreement(ours, ref) >= 0.999, params


def _model_with_decoder():
    model = tiny_sam1()
    model.ais_decoder_state = decoder_state(False)
    return model


def test_ais_segmenter_end_to_end_equals_microsam_golden():
    """Our encoder's embedding + decoder + watershed vs micro-sam's InstanceSegmentationWithDecoder
    (SamPredictor, get_decoder) on the same tiny SAM 1 and decoder weights."""
    g = np.load(GOLDEN)
    seg = AisSegmenter(_model_with_decoder())
    image = g["e2e_image"]  # what micro-sam embedded: it stretches sample_image() to 0..255 first
    assert image.shape == sample_image().shape and image.dtype == np.uint8
    maps = seg.predict_maps(image)
    assert max_rel_err(maps, g["e2e_maps"]) <= 1e-4
    labels = seg.generate(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32 and labels.max() >= 2
    assert agreement(labels, g["e2e_labels"]) >= 0.999
    # precomputed features give the same labels; progress is reported
    from napari_sam.engine.image.family import transform_for

    feats = transform_for(seg.model).encode(image)
    calls = []
    again = seg.generate(image, features=feats, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(again, labels)
    assert calls == [(1, 2), (2, 2)]


def test_ais_segmenter_bad_input():
    model = tiny_sam1()
    model.ais_decoder_state = None
    with pytest.raises(ValueError, match="no instance-segmentation decoder"):
        AisSegmenter(model)
    with pytest.raises(ValueError, match="min_size"):
        AisParams(min_size=-1)
    with pytest.raises(ValueError, match="distance_smoothing"):
        AisParams(distance_smoothing=float("nan"))
    with pytest.raises(ValueError, match="one shape"):
        ais_labels(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        ais_labels(np.full((4, 4), np.nan), np.zeros((4, 4)), np.zeros((4, 4)))
