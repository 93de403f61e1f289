"""Our prompt encoder / two-way transformer / mask decoder in SAM 2 mode vs sam2 1.1.0.

Same random (perturbed) weights, strict load both ways of naming, fp32 CPU, tolerance
max|ours - official| <= 1e-4 max|official| and binarised masks equal on >= 99.9 %.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import mask_agreement, max_rel_err, perturb_

from napari_sam.models.decoder import MaskDecoder, PromptEncoder, TwoWayTransformer

_decoder = pytest.importorskip("sam2.modeling.sam.mask_decoder")
_prompt = pytest.importorskip("sam2.modeling.sam.prompt_encoder")
_transformer = pytest.importorskip("sam2.modeling.sam.transformer")
sam2_heads = SimpleNamespace(
    MaskDecoder=_decoder.MaskDecoder,
    PromptEncoder=_prompt.PromptEncoder,
    TwoWayTransformer=_transformer.TwoWayTransformer,
)

TOL = 1e-4
GRID = 16
IMG = GRID * 16
P = 3
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "state_dicts"

CONFIGS = {
    # SAM 2.1 / 2.0 checkpoints: every extra on
    "sam2.1": {
        "use_high_res_features": True,
        "iou_prediction_use_sigmoid": True,
        "pred_obj_scores": True,
        "pred_obj_scores_mlp": True,
        "use_multimask_token_for_obj_ptr": True,
        "dynamic_multimask_via_stability": True,
    },
    "linear_obj_head": {"pred_obj_scores": True, "pred_obj_scores_mlp": False},
    "plain": {},
}


def assert_close(ours, ref, what):
    err = max_rel_err(ours, ref)
    assert err <= TOL, f"{what}: max rel err {err:.2e}"


def official_prompt_encoder():
    return sam2_heads.PromptEncoder(
        embed_dim=256, image_embedding_size=(GRID, GRID), input_image_size=(IMG, IMG), mask_in_chans=16
    )


def our_prompt_encoder():
    return PromptEncoder(embed_dim=256, image_embedding_size=(GRID, GRID), input_image_size=(IMG, IMG), mask_in_chans=16)


def decoders(config: str, seed: int = 0):
    extra = CONFIGS[config]
    torch.manual_seed(seed)
    ref = sam2_heads.MaskDecoder(
        transformer_dim=256,
        transformer=sam2_heads.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        **extra,
    ).eval()
    perturb_(ref, seed)
    ours = MaskDecoder(
        transformer_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8, mlp_style="sam2"),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        **extra,
    ).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def inputs(batch_image: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(batch_image, 256, GRID, GRID, generator=gen),
        "high_res_features": [
            torch.randn(batch_image, 32, 4 * GRID, 4 * GRID, generator=gen),
            torch.randn(batch_image, 64, 2 * GRID, 2 * GRID, generator=gen),
        ],
    }


def sparse_dense(with_mask: bool, seed: int = 2):
    """SAM 2 style prompts: a box as corner points (labels 2, 3) before clicks; padding -1."""
    gen = torch.Generator().manual_seed(seed)
    pe = perturb_(official_prompt_encoder(), seed)
    coords = torch.rand(P, 4, 2, generator=gen) * IMG
    labels = torch.tensor([[2, 3, 1, 0], [1, 1, 0, -1], [2, 3, 1, -1]])
    masks = torch.randn(P, 1, 4 * GRID, 4 * GRID, generator=gen) * 5 if with_mask else None
    with torch.no_grad():
        sparse, dense = pe(points=(coords, labels), boxes=None, masks=masks)
    return sparse, dense, pe.get_dense_pe()


def run(decoder, feats, sparse, dense, image_pe, multimask, repeat_image):
    with torch.no_grad():
        return decoder(
            image_embeddings=feats["image_embeddings"],
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=repeat_image,
            high_res_features=feats["high_res_features"] if decoder.use_high_res_features else None,
        )


def compare(ours_out, ref_out, what):
    names = ("masks", "iou", "sam_tokens_out", "object_score_logits")
    for name, o, r in zip(names, ours_out, ref_out):
        assert o.shape == r.shape, (what, name, o.shape, r.shape)
        if name == "iou":
            continue  # judged with all four IoU outputs together, see test_decoder
        assert_close(o, r, f"{what} {name}")
    assert mask_agreement(ours_out[0], ref_out[0]) >= 0.999


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("repeat_image", [True, False], ids=["shared_image", "image_per_prompt"])
def test_decoder(config, repeat_image):
    ref, ours = decoders(config)
    feats = inputs(1 if repeat_image else P)
    sparse, dense, image_pe = sparse_dense(with_mask=not repeat_image)
    ref_ious, our_ious = [], []
    for multimask in (True, False):
        ref_out = run(ref, feats, sparse, dense, image_pe, multimask, repeat_image)
        our_out = run(ours, feats, sparse, dense, image_pe, multimask, repeat_image)
        compare(our_out, ref_out, f"{config} multimask={multimask}")
        ref_ious.append(ref_out[1])
        our_ious.append(our_out[1])
    # single + multimask IoUs together: one output alone can sit near 0 (see test_sam1_parity)
    assert_close(torch.cat(our_ious, 1), torch.cat(ref_ious, 1), f"{config} iou")


def test_dynamic_multimask_via_stability_takes_both_branches():
    ref, ours = decoders("sam2.1", seed=3)
    feats = inputs(1)
    sparse, dense, image_pe = sparse_dense(with_mask=False, seed=4)
    with torch.no_grad():
        all_masks = ours.predict_masks(feats["image_embeddings"], image_pe, sparse, dense, feats["high_res_features"])[0]
    # pick delta / threshold so that some prompt sets are stable and some are not
    delta = float(all_masks[:, 0].abs().median())
    for dec in (ref, ours):
        dec.dynamic_multimask_stability_delta = delta
    scores = ours.stability_scores(all_masks[:, 0])
    thresh = float(scores.sort().values[:2].mean())
    for dec in (ref, ours):
        dec.dynamic_multimask_stability_thresh = thresh
    stable = scores >= thresh
    assert stable.any() and not stable.all(), scores

    ref_out = run(ref, feats, sparse, dense, image_pe, multimask=False, repeat_image=True)
    our_out = run(ours, feats, sparse, dense, image_pe, multimask=False, repeat_image=True)
    compare(our_out, ref_out, "dynamic multimask")
    assert_close(our_out[1], ref_out[1], "dynamic multimask iou")
    # unstable rows really took a multimask output
    unstable = ~stable
    assert not torch.equal(our_out[0][unstable], all_masks[unstable, :1])
    assert torch.equal(our_out[0][stable], all_masks[stable, :1])


def test_repeat_image_false_needs_matching_batches():
    _, ours = decoders("plain")
    sparse, dense, image_pe = sparse_dense(with_mask=False)
    with pytest.raises(ValueError):
        run(ours, inputs(1), sparse, dense, image_pe, multimask=True, repeat_image=False)


def test_prompt_encoder_sam2():
    ref = perturb_(official_prompt_encoder(), 5)
    ours = our_prompt_encoder()
    ours.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(6)
    coords = torch.rand(P, 5, 2, generator=gen) * IMG
    labels = torch.tensor([[2, 3, 1, 0, -1], [1, 0, 0, 1, 1], [2, 3, -1, -1, 1]])
    masks = torch.randn(P, 1, 4 * GRID, 4 * GRID, generator=gen)
    with torch.no_grad():
        for kwargs in ({"points": (coords, labels), "boxes": None, "masks": masks}, {"points": (coords, labels), "boxes": None, "masks": None}):
            for o, r in zip(ours(**kwargs), ref(**kwargs)):
                assert o.shape == r.shape
                assert_close(o, r, "sam2 prompt encoder")
        assert_close(ours.get_dense_pe(), ref.get_dense_pe(), "dense pe")


def test_transformer_sam2_keys():
    torch.manual_seed(7)
    ref = perturb_(sam2_heads.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), 7)
    ours = TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8, mlp_style="sam2")
    ours.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(8)
    image = torch.randn(2, 256, GRID, GRID, generator=gen)
    pe = torch.randn(1, 256, GRID, GRID, generator=gen)
    tokens = torch.randn(2, 7, 256, generator=gen)
    with torch.no_grad():
        for o, r in zip(ours(image, pe, tokens), ref(image, pe, tokens)):
            assert_close(o, r, "sam2 two-way transformer")


def _reference_keys(prefix: str) -> dict[str, tuple[int, ...]]:
    path = REFERENCE / "sam2.1_t.txt"
    if not path.exists():
        pytest.skip(f"{path} not available")
    out = {}
    for line in path.read_text().splitlines():
        key, shape, _ = line.split("\t")
        if key.startswith(prefix):
            out[key[len(prefix) :]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def test_state_dicts_equal_sam2_1_checkpoint_listing():
    _, ours = decoders("sam2.1")
    decoder_keys = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert decoder_keys == _reference_keys("sam_mask_decoder.")
    encoder_keys = {k: tuple(v.shape) for k, v in our_prompt_encoder().state_dict().items()}
    assert encoder_keys == _reference_keys("sam_prompt_encoder.")
