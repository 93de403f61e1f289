"""SAM 1 parity against segment_anything 1.0 (random weights, strict load, fp32 CPU).

The reference is the official model with a reduced ViT (2 blocks, one windowed with window
padding, one global; 320 px input -> 20x20 embedding), perturbed so every tensor matters.
Prompts go through the official ``SamPredictor.predict_torch`` path (prompt encoder ->
mask decoder with ``repeat_interleave``) and through our ``Sam1.decode``.
Tolerance: max|ours - official| <= 1e-4 max|official|; binarised masks agree on >= 99.9 %.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import mask_agreement, max_rel_err, perturb_

from napari_sam.models.sam1 import Sam1Config, build_sam1

sam_modeling = pytest.importorskip("segment_anything.modeling")

TOL = 1e-4
SIZE = 320
GRID = SIZE // 16
P = 3  # prompt sets decoded together


def official_sam(img_size: int, embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]):
    g = img_size // 16
    return sam_modeling.Sam(
        image_encoder=sam_modeling.ImageEncoderViT(
            img_size=img_size,
            depth=depth,
            embed_dim=embed_dim,
            num_heads=heads,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_idx,
            window_size=14,
            out_chans=256,
        ),
        prompt_encoder=sam_modeling.PromptEncoder(
            embed_dim=256, image_embedding_size=(g, g), input_image_size=(img_size, img_size), mask_in_chans=16
        ),
        mask_decoder=sam_modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=sam_modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    ).eval()


def official_decode(ref, embed, point_coords=None, point_labels=None, boxes=None, mask_input=None, multimask=True):
    """What ``SamPredictor.predict_torch`` computes (low-res logits and IoU)."""
    points = None if point_coords is None else (point_coords, point_labels)
    sparse, dense = ref.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return ref.mask_decoder(
        image_embeddings=embed,
        image_pe=ref.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def assert_close(ours, ref, what):
    err = max_rel_err(ours, ref)
    print(f"[parity] {what}: {err:.2e}")  # shown with -s
    assert err <= TOL, f"{what}: max rel err {err:.2e}"
    return err


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ref = perturb_(official_sam(SIZE, 192, 2, 3, (1,)), seed=1)
    cfg = Sam1Config(
        encoder_embed_dim=192, encoder_depth=2, encoder_num_heads=3, encoder_global_attn_indexes=(1,), image_size=SIZE
    )
    ours = build_sam1(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_embed = ref.image_encoder(x)
        our_embed = ours.encode_image(x)["image_embed"]
    return ref, ours, ref_embed, our_embed


def _prompts():
    gen = torch.Generator().manual_seed(3)
    coords = torch.rand(P, 4, 2, generator=gen) * SIZE
    labels = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0], [0, 1, -1, 1]])
    boxes = torch.tensor([[10.0, 20, 200, 150], [50, 60, 300, 310], [0, 0, 100, 100]])
    masks = torch.randn(P, 1, 4 * GRID, 4 * GRID, generator=gen) * 5
    return {
        "one_point": {"point_coords": coords[:1, :1], "point_labels": labels[:1, :1]},
        "points_pos_neg": {"point_coords": coords[:1], "point_labels": labels[1:2]},
        "box": {"boxes": boxes[:1]},
        "points_and_box": {"point_coords": coords[:1, :2], "point_labels": labels[:1, :2], "boxes": boxes[1:2]},
        "mask_and_point": {"point_coords": coords[:1, :1], "point_labels": labels[:1, :1], "mask_input": masks[:1]},
        "mask_only": {"mask_input": masks[:1]},
        "no_prompt": {},
        "batched_points": {"point_coords": coords, "point_labels": labels},
        "batched_boxes": {"boxes": boxes},
        "batched_points_boxes": {"point_coords": coords, "point_labels": labels, "boxes": boxes},
        "batched_points_masks": {"point_coords": coords, "point_labels": labels, "mask_input": masks},
    }


PROMPTS = _prompts()


def test_state_dict_matches_official(models):
    ref, ours, _, _ = models
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert all(our_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert "pixel_mean" not in our_sd and "pixel_std" not in our_sd


def test_image_embedding(models):
    _, _, ref_embed, our_embed = models
    assert our_embed.shape == (1, 256, GRID, GRID)
    assert_close(our_embed, ref_embed, "image embedding")


@pytest.mark.parametrize("case", list(PROMPTS))
def test_decode(models, case):
    """Logits in both modes; IoU as the decoder's whole IoU head output (single + multimask).

    The IoU head predicts 4 values per prompt set; the single-mask mode returns one of them.
    Judged alone, one value near 0 would make the relative measure meaningless (e.g. 6e-4
    with an fp32 round-off of 1e-7), so the IoU is compared as the full 4-value prediction.
    """
    ref, ours, ref_embed, our_embed = models
    prompts = PROMPTS[case]
    ref_ious, our_ious = [], []
    for multimask in (True, False):
        with torch.no_grad():
            ref_logits, ref_iou = official_decode(ref, ref_embed, multimask=multimask, **prompts)
            logits, iou = ours.decode({"image_embed": our_embed}, multimask=multimask, **prompts)
        k = 3 if multimask else 1
        batch = ref_logits.shape[0]
        assert logits.shape == (batch, k, 4 * GRID, 4 * GRID) and iou.shape == (batch, k)
        assert_close(logits, ref_logits, f"{case} logits (multimask={multimask})")
        assert mask_agreement(logits, ref_logits) >= 0.999
        ref_ious.append(ref_iou)
        our_ious.append(iou)
    assert_close(torch.cat(our_ious, 1), torch.cat(ref_ious, 1), f"{case} iou")


def test_decode_shared_prompt_broadcasts(models):
    """A batch-1 prompt is shared by the P sets of another prompt (official needs it repeated)."""
    ref, ours, ref_embed, our_embed = models
    coords, labels = PROMPTS["one_point"]["point_coords"], PROMPTS["one_point"]["point_labels"]
    boxes = PROMPTS["batched_boxes"]["boxes"]
    with torch.no_grad():
        ref_logits, ref_iou = official_decode(
            ref, ref_embed, coords.expand(P, -1, -1), labels.expand(P, -1), boxes=boxes
        )
        logits, iou = ours.decode({"image_embed": our_embed}, coords, labels, boxes=boxes)
    assert_close(logits, ref_logits, "broadcast logits")
    assert_close(iou, ref_iou, "broadcast iou")


def test_decode_accepts_a_flat_box(models):
    _, ours, _, our_embed = models
    box = PROMPTS["box"]["boxes"]
    with torch.no_grad():
        flat = ours.decode({"image_embed": our_embed}, boxes=box[0])
        batched = ours.decode({"image_embed": our_embed}, boxes=box)
    assert torch.equal(flat[0], batched[0]) and torch.equal(flat[1], batched[1])


def test_decode_image_embedding_not_copied_per_prompt(models):
    """P prompt sets against one image: the decoder sees a batch-1 image (no repeat_interleave)."""
    _, ours, _, our_embed = models
    seen = []
    hook = ours.mask_decoder.transformer.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            ours.decode({"image_embed": our_embed}, **PROMPTS["batched_points"])
    finally:
        hook.remove()
    assert seen == [1]


def test_decode_rejects_mismatched_batches(models):
    _, ours, _, our_embed = models
    with pytest.raises(ValueError):
        ours.decode({"image_embed": our_embed}, boxes=torch.zeros(2, 4), mask_input=torch.zeros(3, 1, 80, 80))
    with pytest.raises(ValueError):
        ours.decode({"image_embed": our_embed}, point_coords=torch.zeros(1, 1, 2))


def test_model_contract(models):
    _, ours, _, _ = models
    assert ours.family == "sam1" and ours.mask_threshold == 0.0 and ours.image_size == SIZE
    with pytest.raises(ValueError):
        ours.encode_image(torch.zeros(1, 3, SIZE // 2, SIZE // 2))


@pytest.mark.slow
def test_full_vit_b_parity():
    """Full ViT-B at 1024^2: image embedding, then one batched points + box decode."""
    torch.manual_seed(0)
    ref = perturb_(official_sam(1024, 768, 12, 12, (2, 5, 8, 11)), seed=4)
    ours = build_sam1("vit_b").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(5))
    coords = torch.tensor([[[500.0, 400.0], [620.0, 410.0]], [[100.0, 900.0], [130.0, 880.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[300.0, 200.0, 800.0, 700.0], [50.0, 700.0, 400.0, 1000.0]])
    with torch.no_grad():
        ref_embed = ref.image_encoder(x)
        our_embed = ours.encode_image(x)["image_embed"]
        assert_close(our_embed, ref_embed, "vit_b image embedding")
        for multimask in (True, False):
            ref_logits, ref_iou = official_decode(ref, ref_embed, coords, labels, boxes, multimask=multimask)
            logits, iou = ours.decode({"image_embed": our_embed}, coords, labels, boxes, multimask=multimask)
            assert logits.shape == (2, 3 if multimask else 1, 256, 256)
            assert_close(logits, ref_logits, "vit_b logits")
            assert_close(iou, ref_iou, "vit_b iou")
            assert mask_agreement(logits, ref_logits) >= 0.999


@pytest.mark.parametrize("q_len,k_len,table_len", [(14, 14, 27), (20, 20, 27), (8, 16, 31)])
def test_relative_position_table_matches_official(q_len, k_len, table_len):
    """Including a table trained for another size (linear resize) and unequal q / k lengths."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    from napari_sam.models.sam1.image_encoder import relative_position_table

    table = torch.randn(table_len, 8, generator=torch.Generator().manual_seed(9))
    assert_close(relative_position_table(table, q_len, k_len), get_rel_pos(q_len, k_len, table), "rel pos table")


@pytest.mark.parametrize("split_global", [False, True], ids=["together", "one_image_at_a_time"])
def test_batched_image_embedding(models, monkeypatch, split_global):
    from napari_sam.models.sam1 import image_encoder

    if split_global:
        monkeypatch.setattr(image_encoder, "_BIAS_LIMIT", 0)
    ref, ours, _, _ = models
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        assert_close(ours.encode_image(x)["image_embed"], ref.image_encoder(x), "batched embedding")


def test_image_embedding_math_backend(models):
    """The rel-pos bias reaches the plain math backend the same way as SDPA's attn_mask."""
    from napari_sam.models.common import attention_backend

    _ref, ours, ref_embed, _ = models
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), attention_backend("math"):
        assert_close(ours.encode_image(x)["image_embed"], ref_embed, "embedding (math backend)")
