"""The per-family transform (engine/image/family.py) against the official code's own transforms:
prompt scaling bit for bit, logit upscaling, preprocessing, and the one encoder-input rule."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_sam.engine.image.family import Sam1Transform, Sam2Transform, transform_for
from napari_sam.engine.image.preprocess import preprocess_sam1, preprocess_sam2_image, preprocess_sam2_video
from napari_sam.models.sam1 import Sam1Config, build_sam1
from napari_sam.models.sam2 import build_sam2, reduced_config

SIZES = [(150, 230), (768, 1024), (333, 1999), (2048, 2048), (7, 5)]


@pytest.fixture(scope="module")
def sam1():
    return build_sam1(Sam1Config(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                                 encoder_global_attn_indexes=(0,), image_size=64)).eval()


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    return build_sam2(reduced_config("2.1", image_size=64)).eval()


def _points(hw, n=200, seed=0):
    h, w = hw
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-0.5, w - 0.5, n), rng.uniform(-0.5, h - 0.5, n)], 1)


def _boxes(hw, n=50, seed=1):
    a, b = _points(hw, n, seed), _points(hw, n, seed + 1)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], 1)


def test_transform_for_picks_the_family(sam1, sam2):
    assert isinstance(transform_for(sam1), Sam1Transform) and isinstance(transform_for(sam2), Sam2Transform)
    with pytest.raises(ValueError, match="unknown model family 'sam9'"):
        transform_for(SimpleNamespace(family="sam9", image_size=64))
    with pytest.raises(ValueError, match="unknown model family None"):
        transform_for(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("hw", SIZES)
def test_sam1_prompts_scale_as_resize_longest_side(sam1, hw):
    """SamPredictor: ``ResizeLongestSide.apply_coords`` in float64, then ``torch.float``."""
    from segment_anything.utils.transforms import ResizeLongestSide

    ref = ResizeLongestSide(64)
    tf = transform_for(sam1)
    pts, boxes = _points(hw), _boxes(hw)
    want = torch.as_tensor(ref.apply_coords(pts, hw), dtype=torch.float)
    assert torch.equal(tf.points_to_input(pts, hw), want)
    assert torch.equal(tf.boxes_to_input(boxes, hw), torch.as_tensor(ref.apply_boxes(boxes, hw), dtype=torch.float))
    assert tf.input_hw(hw) == ref.get_preprocess_shape(*hw, 64)


@pytest.mark.parametrize("hw", SIZES)
def test_sam2_prompts_scale_as_sam2_transforms(sam2, hw):
    """SAM2ImagePredictor: float32 tensors, ``SAM2Transforms.transform_coords`` x / w * S."""
    from sam2.utils.transforms import SAM2Transforms

    ref = SAM2Transforms(resolution=64, mask_threshold=0.0)
    tf = transform_for(sam2)
    pts, boxes = _points(hw), _boxes(hw)
    want = ref.transform_coords(torch.as_tensor(pts, dtype=torch.float), normalize=True, orig_hw=hw)
    assert torch.equal(tf.points_to_input(pts, hw), want)
    want_boxes = ref.transform_boxes(torch.as_tensor(boxes, dtype=torch.float), normalize=True, orig_hw=hw)
    assert torch.equal(tf.boxes_to_input(boxes, hw), want_boxes.reshape(-1, 4))
    assert tf.input_hw(hw) == (64, 64)


def _low_res(n=3, s=16, seed=0):
    return torch.randn(n, s, s, generator=torch.Generator().manual_seed(seed)) * 4


@pytest.mark.parametrize("hw", [(150, 230), (64, 64), (64, 40), (200, 200)])
def test_sam1_upscale_equals_official_postprocess_masks(sam1, hw):
    from segment_anything.modeling import Sam

    tf = transform_for(sam1)
    low = _low_res()
    official_self = SimpleNamespace(image_encoder=SimpleNamespace(img_size=64))
    want = Sam.postprocess_masks(official_self, low[None], tf.input_hw(hw), hw)[0]
    got = tf.upscale(low, hw)
    assert got.shape == (3, *hw) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert float(((got > 0) == (want > 0)).float().mean()) >= 0.9999


@pytest.mark.parametrize("hw", [(150, 230), (16, 16), (1024, 1024)])
def test_sam2_upscale_equals_official_postprocess_masks(sam2, hw):
    from sam2.utils.transforms import SAM2Transforms

    tf = transform_for(sam2)
    low = _low_res()
    want = SAM2Transforms(resolution=64, mask_threshold=0.0).postprocess_masks(low[None], hw)[0]
    got = tf.upscale(low, hw)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert float(((got > 0) == (want > 0)).float().mean()) >= 0.9999


def test_upscale_keeps_leading_dims(sam1):
    tf = transform_for(sam1)
    low = _low_res(6).reshape(2, 3, 16, 16)
    got = tf.upscale(low, (50, 70))
    assert got.shape == (2, 3, 50, 70)
    torch.testing.assert_close(got[1], tf.upscale(low[1], (50, 70)), rtol=0, atol=0)


def test_preprocessing_is_the_official_per_family(sam1, sam2):
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    s1, s2 = transform_for(sam1), transform_for(sam2)
    assert torch.equal(s1.preprocess(rgb), preprocess_sam1(rgb, 64))
    assert torch.equal(s1.preprocess_frame(rgb), preprocess_sam1(rgb, 64))
    assert torch.equal(s2.preprocess(rgb), preprocess_sam2_image(rgb, 64))
    assert torch.equal(s2.preprocess_frame(rgb), preprocess_sam2_video(rgb, 64))
    assert torch.equal(transform_for(sam2).preprocess_frame(rgb), preprocess_sam2_video(rgb, 64))  # the stores' entry point


def test_sam2_returns_clamped_logits_and_object_scores(sam1, sam2):
    low = torch.tensor([-50.0, -3.0, 40.0])
    assert torch.equal(transform_for(sam2).returned_logits(low), torch.tensor([-32.0, -3.0, 32.0]))
    assert torch.equal(transform_for(sam1).returned_logits(low), low)
    assert transform_for(sam2).decode_options == {"return_object_scores": True}
    assert transform_for(sam1).decode_options == {}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encoder_input_takes_the_model_dtype(sam1, dtype):
    """One rule for every encode path: the model's first floating-point parameter decides."""
    model = build_sam1(Sam1Config(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                                  encoder_global_attn_indexes=(0,), image_size=64)).to(dtype).eval()
    tf = transform_for(model)
    rgb = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    x = tf.encoder_input(tf.preprocess(rgb))
    assert x.dtype == dtype and x.shape == (1, 3, 64, 64)
    feats = tf.encode(rgb)
    with torch.inference_mode():
        want = model.encode_image(preprocess_sam1(rgb, 64).to(dtype))
    assert feats["image_embed"].dtype == dtype
    assert torch.equal(feats["image_embed"], want["image_embed"])


def test_stores_record_the_frame_preprocessing_the_transform_does(sam1, sam2):
    from napari_sam.engine.store.embedding_store import EmbeddingStore

    for model in (sam1, sam2):
        store = EmbeddingStore(None, model, np.zeros((1, 8, 8), np.uint8))
        assert store._meta["preprocess"]["kind"] == transform_for(model).frame_preprocess_kind
