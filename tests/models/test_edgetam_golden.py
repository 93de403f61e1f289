"""EdgeTAM (models/edgetam) vs the official EdgeTAM's outputs recorded in
tests/golden/edgetam_reference.npz by tests/golden/make_edgetam_golden.py.

Runs without the official reference (CI: no timm, no torchvision): the weights and inputs
are rebuilt from numpy seeds, checked against the SHA-256 the golden file recorded, and our
image encoder and spatial perceiver are compared with the official outputs at
max|ours - official| <= 1e-4 max|official|. The live comparison against the reference
itself is tests/models/test_edgetam_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import max_rel_err
from golden.make_edgetam_golden import (GOLDEN, N_OBJ, SIZE, conv_state, encoder_state, image,
                                        input_digests, memories, perceiver_state)

from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder, SpatialPerceiver

TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def test_golden_inputs_are_reproduced(golden):
    """The seeded weights, image and memories are the ones the official outputs were made of."""
    for name, sha in input_digests().items():
        assert str(golden[name]) == sha, f"{name}: the recipe in make_edgetam_golden.py drifted"


def _encoder(fuse: bool) -> EdgeTamImageEncoder:
    enc = EdgeTamImageEncoder(EDGETAM_CONFIG).eval()
    enc.load_state_dict(encoder_state(), strict=True)
    return enc.fuse_() if fuse else enc


@pytest.mark.parametrize("fuse", [False, True], ids=["plain", "fused"])
def test_edgetam_image_encoder_equals_official_golden(golden, fuse):
    """``forward_image``: FPN levels 0 / 1 through conv_s0 / conv_s1, and vision_features."""
    convs = conv_state()
    with torch.no_grad():
        levels = _encoder(fuse)(image())
    assert [tuple(t.shape) for t in levels] == [(1, 256, SIZE // s, SIZE // s) for s in (4, 8, 16)]
    s0 = F.conv2d(levels[0], convs["conv_s0.weight"], convs["conv_s0.bias"])
    s1 = F.conv2d(levels[1], convs["conv_s1.weight"], convs["conv_s1.bias"])
    assert max_rel_err(s0, golden["backbone_fpn_0"]) <= TOL
    assert max_rel_err(s1, golden["backbone_fpn_1"]) <= TOL
    assert max_rel_err(levels[2], golden["vision_features"]) <= TOL
    for key in ("backbone_fpn_0", "backbone_fpn_1", "vision_features"):  # not flat, not blown up
        ref = golden[key]
        assert np.isfinite(ref).all() and ref.std() > 1e-3 * np.abs(ref).max() > 0


def test_edgetam_spatial_perceiver_equals_official_golden(golden):
    """3 objects at once (the official run was one object at a time) -> 256 + 256 latents."""
    perceiver = SpatialPerceiver(EDGETAM_CONFIG).eval()
    perceiver.load_state_dict(perceiver_state(), strict=True)
    mem, pos = memories()
    with torch.no_grad():
        tokens, tok_pos = perceiver(mem, pos)
    assert tokens.shape == golden["perceiver_tokens"].shape == (N_OBJ, 512, 64)
    assert max_rel_err(tokens, golden["perceiver_tokens"]) <= TOL
    assert max_rel_err(tokens[:, 256:], golden["perceiver_tokens"][:, 256:]) <= TOL  # 2-D half
    assert max_rel_err(tok_pos, golden["perceiver_pos"]) <= TOL
    assert np.count_nonzero(golden["perceiver_pos"][:, :256]) == 0
    assert np.abs(golden["perceiver_pos"][:, 256:]).max() > 0.1
