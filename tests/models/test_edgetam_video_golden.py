"""EdgeTAM video (our VideoSession on ``build_edgetam``) vs the official EdgeTAM video
predictor's outputs recorded in tests/golden/edgetam_video_reference.npz by
``make_edgetam_golden.py video``.

Runs without the reference (CI): the weights (numpy seeds, ``model_state``) and frames are
rebuilt, checked against the recorded SHA-256, and the scenario (three objects prompted on
different frames by a click, a box and a mask, one marked absent by an empty mask; forward,
backward, a correction, both directions again) is replayed. With these weights the object
score also judges objects absent on some tracked frames and present again on others.
Every prompt output and propagated frame of every object: max|ours - official| <= 1e-4
max|official| on the logits, masks >= 99.9 % equal, object scores within 1e-4. The live
comparison is test_edgetam_video_parity.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import mask_agreement, max_rel_err
from golden.make_edgetam_golden import (VIDEO_GOLDEN, OurDriver, flatten_records, model_state, run_scenario,
                                        video_config, video_digests, video_frames)

from napari_sam.models.edgetam import build_edgetam

REL_TOL, AGREE = 1e-4, 0.999


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(VIDEO_GOLDEN))


def test_golden_video_inputs_are_reproduced(golden):
    for name, sha in video_digests().items():
        assert str(golden[name]) == sha, f"{name}: the recipe in make_edgetam_golden.py drifted"


def test_build_edgetam_has_the_official_state_dict_names_and_shapes(golden):
    """``build_edgetam()`` (what the registry loads a checkpoint into, strict) has exactly
    the official model's state-dict names and shapes, recorded from the official code."""
    with torch.device("meta"):
        model = build_edgetam()
    have = {k: ",".join(map(str, t.shape)) for k, t in model.state_dict().items()}
    want = dict(zip(golden["state_keys"].tolist(), golden["state_shapes"].tolist()))
    assert len(want) == 982 and have == want


def test_edgetam_video_scenario_equals_official_golden(golden):
    model = build_edgetam(video_config())
    model.load_state_dict(model_state(), strict=True)
    ours = flatten_records(run_scenario(OurDriver(model.eval(), video_frames())))
    assert list(ours["labels"]) == list(golden["labels"])
    worst_rel, worst_agree = 0.0, 1.0
    for label, logits, ref in zip(ours["labels"], ours["logits"], golden["logits"]):
        rel, agree = max_rel_err(logits, ref), mask_agreement(logits, ref)
        worst_rel, worst_agree = max(worst_rel, rel), min(worst_agree, agree)
        assert rel <= REL_TOL and agree >= AGREE, f"{label}: rel err {rel:.2e}, agreement {agree:.5f}"
    np.testing.assert_allclose(ours["scores"], golden["scores"], atol=1e-4)
    # the recorded run is not degenerate: objects differ, vanish and come back, masks vary
    scores = golden["scores"][np.isfinite(golden["scores"])]
    assert (scores > 0).sum() >= 10 and (scores < 0).sum() >= 10
    cover = (golden["logits"] > 0).mean(axis=(1, 2))
    assert cover.max() > 0.5 and (cover == 0).sum() >= 10 and ((cover > 0.02) & (cover < 0.98)).sum() >= 10
    print(f"\n[edgetam video golden] {len(ours['labels'])} comparisons, worst rel err {worst_rel:.2e}, "
          f"worst mask agreement {worst_agree:.5f}")
