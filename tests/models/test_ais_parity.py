"""micro-sam's AIS decoder (torch_em's UNETR decoder, models/ais) vs micro-sam 1.8.14.

Weights: numpy-seeded tensors (tests/golden/make_ais_golden.py: numpy_state) loaded strict
into both. CI (no micro-sam, no torch_em) compares with tests/golden/ais_reference.npz, made
once by that script; where micro-sam is importable the live tests compare directly."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import max_rel_err
from golden.make_ais_golden import GOLDEN, IMAGE_HW, INPUT_HW, S, decoder_state, embedding, microsam_decoder

from napari_sam.models.ais import AisDecoder, build_ais_decoder

TOL = 1e-4
HAVE_MICROSAM = all(importlib.util.find_spec(m) is not None for m in ("micro_sam", "torch_em"))
needs_microsam = pytest.mark.skipif(not HAVE_MICROSAM, reason="micro-sam / torch_em not installed "
                                    "(they need torchvision); the golden tests cover CI")


def _ours(state, embed, input_hw, image_hw, image_size):
    with torch.no_grad():
        return AisDecoder.to_image(build_ais_decoder(state)(embed), input_hw, image_hw, image_size)[0]


@pytest.mark.parametrize("transposed", [False, True], ids=["interpolate", "transposed"])
def test_decoder_equals_microsam_golden(transposed):
    g = np.load(GOLDEN)
    np.testing.assert_array_equal(embedding().numpy(), g["embedding"])  # the seeded input is rebuilt
    ref = g["maps_transposed" if transposed else "maps"]
    out = _ours(decoder_state(transposed), embedding(), INPUT_HW, IMAGE_HW, S)
    assert out.shape == (3, *IMAGE_HW)
    assert max_rel_err(out, ref) <= TOL
    assert ref.std() > 0.05  # the maps are not flat: every layer shows in them


@needs_microsam
@pytest.mark.parametrize("transposed", [False, True], ids=["interpolate", "transposed"])
def test_decoder_equals_microsam_live(transposed):
    """micro-sam's DecoderAdapter and torch_em's UNETR.decode, same weights, another shape."""
    state = decoder_state(transposed)
    gen = torch.Generator().manual_seed(5)
    embed = torch.randn(1, 256, 10, 10, generator=gen)
    input_hw, image_hw = (120, 160), (131, 175)  # the image was shrunk to the 160 input
    adapter = microsam_decoder(state, img_size=160)
    with torch.no_grad():
        ref = adapter(embed, input_hw, image_hw)[0]
    assert max_rel_err(_ours(state, embed, input_hw, image_hw, 160), ref) <= TOL


@needs_microsam
def test_decoder_equals_torch_em_unetr_decode():
    from golden.make_ais_golden import _EncoderStub
    from torch_em.model import UNETR

    state = decoder_state(False)
    unetr = UNETR(backbone="sam", encoder=_EncoderStub(S), out_channels=3, use_sam_stats=True,
                  final_activation="Sigmoid", use_skip_connection=False, resize_input=True)
    unetr.load_state_dict({**{k: v for k, v in unetr.state_dict().items() if k.startswith("encoder.")},
                           **state}, strict=True)
    with torch.no_grad():
        ref = unetr.eval().decode((embedding(), None, None), INPUT_HW, IMAGE_HW)[0]
    assert max_rel_err(_ours(state, embedding(), INPUT_HW, IMAGE_HW, S), ref) <= TOL


def test_decoder_state_is_loaded_strict():
    state = decoder_state(False)
    build_ais_decoder({**state, "encoder.neck.0.weight": torch.zeros(1)})  # a whole UNETR's state: fine
    missing = {k: v for k, v in state.items() if k != "deconv2.block.2.running_var"}
    with pytest.raises(ValueError, match=r"missing \['deconv2.block.2.running_var'\]"):
        build_ais_decoder(missing)
    wrong = {**state, "out_conv.weight": torch.zeros(4, 64, 1, 1)}
    with pytest.raises(ValueError, match=r"wrong shape \['out_conv.weight'\]"):
        build_ais_decoder(wrong)
    with pytest.raises(ValueError, match="base.block.1.weight"):
        build_ais_decoder({"image_encoder.x": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"\(B, 256, h, w\)"):
        build_ais_decoder(state)(torch.zeros(1, 32, 4, 4))
