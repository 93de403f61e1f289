"""The training pipeline at toy scale: data, prompts, losses, the inference-equal output
choice, both steps, and a resumable, reproducible loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.models.sam2 import build_sam2
from napari_sam.training import data, heads, losses, prompts
from napari_sam.training.loop import Recipe, lr_at, train
from napari_sam.training.steps import image_step, video_step
from napari_sam.weights import embedded_config

SIZE = 128


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_sam2(embedded_config().replace(image_size=SIZE))


def test_examples_are_seeded_and_shaped():
    a, b = data.image_example(7, SIZE), data.image_example(7, SIZE)
    assert a.images.shape == (1, 3, SIZE, SIZE) and a.labels.shape == (1, SIZE, SIZE)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, data.image_example(8, SIZE).images)
    clip = data.clip_example(3, 5, SIZE)
    assert clip.images.shape == (5, 3, SIZE, SIZE) and clip.labels.shape == (5, SIZE, SIZE)
    assert clip.source in ("timelapse", "zstack") and clip.num_frames >= 5


def test_prompts_fall_where_they_should():
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 40), bool)
    mask[10:20, 5:30] = True
    for _ in range(20):
        x, y = prompts.inner_point(rng, mask).astype(int)
        assert mask[y, x]
    x, y = prompts.centre_point(mask).astype(int)
    assert mask[y, x] and abs(y - 14.5) <= 1 and abs(x - 17) <= 1
    assert prompts.bounding_box(mask).tolist() == [5, 10, 29, 19]
    pred = mask.copy()
    pred[10:20, 20:30] = False  # missed the right part -> a positive click there
    (x, y), label = prompts.corrective_click(rng, pred, mask)
    assert label == 1 and mask[int(y), int(x)] and not pred[int(y), int(x)]
    pred = mask.copy()
    pred[25:35, 5:30] = True  # spilled below -> a negative click there
    (x, y), label = prompts.corrective_click(rng, pred, mask)
    assert label == 0 and not mask[int(y), int(x)]
    assert prompts.corrective_click(rng, mask, mask) is None


def test_losses_prefer_the_right_mask():
    target = torch.zeros(2, 16, 16)
    target[:, 4:12, 4:12] = 1
    good = (target * 20 - 10)[:, None].repeat(1, 4, 1, 1)
    bad = -good
    ious = torch.ones(2, 4)
    obj = torch.full((2, 1), 5.0)
    mm = torch.tensor([True, False])
    lg, sg = losses.prompt_losses(good, ious, obj, target, mm)
    lb, sb = losses.prompt_losses(bad, ious, obj, target, mm)
    assert lg < 0.1 < lb and sg["iou"] == 1.0 and sb["iou"] == 0.0
    assert losses.hard_iou(good, target[:, None]).min() == 1.0
    # token 0 wrong: counts for a multimask row only while token0_on_multimask is on
    bad0 = good.clone()
    bad0[:, 0] = -bad0[:, 0]
    with_t0 = losses.prompt_losses(bad0[:1], ious[:1], obj[:1], target[:1], mm[:1])[0]
    without = losses.prompt_losses(bad0[:1], ious[:1], obj[:1], target[:1], mm[:1], token0_on_multimask=False)[0]
    single = losses.prompt_losses(bad0[1:], ious[1:], obj[1:], target[1:], mm[1:], token0_on_multimask=False)[0]
    assert without < 0.3 and with_t0 > without + 1.0 and single > without + 1.0  # 0.25: token 0's IoU guess


def test_plain_bce_weighs_missed_and_false_pixels_alike():
    """20 false pixels cost what 20 missed ones do under plain BCE; class-balanced BCE makes a
    missed pixel of this 100-pixel object ~40x dearer, which biased masks large."""
    target = torch.zeros(1, 64, 64)
    target[0, 20:30, 20:30] = 1
    right = target * 20 - 10
    false_px, missed_px = right.clone(), right.clone()
    false_px[0, 40:42, 10:20] = 10
    missed_px[0, 20:22, 20:30] = -10
    plain_f, plain_m = losses.plain_bce(false_px, target), losses.plain_bce(missed_px, target)
    torch.testing.assert_close(plain_f, plain_m, rtol=1e-4, atol=0)
    assert float(losses.balanced_bce(missed_px, target)) > 30 * float(losses.balanced_bce(false_px, target))
    mm = torch.tensor([False])
    ious, obj = torch.ones(1, 4), torch.full((1, 1), 5.0)

    def loss(m, w):
        return float(losses.prompt_losses(m[:, None].repeat(1, 4, 1, 1), ious, obj, target, mm, plain_bce_weight=w)[0])

    assert loss(right, 10) < loss(false_px, 10) and loss(right, 10) < loss(missed_px, 10)
    assert loss(missed_px, 10) / loss(false_px, 10) < 1.2 and loss(missed_px, 0) / loss(false_px, 0) > 3


def test_choose_equals_the_inference_heads(tiny_model):
    """Training's decode + choice gives what forward_sam_heads gives. (Single-mask output is
    compared in train mode: in eval mode the decoder may swap an unstable token 0 for the
    best multimask output, the official dynamic-multimask rule.)"""
    m = tiny_model
    torch.manual_seed(1)
    h = SIZE // 16
    pix = torch.randn(3, 128, h, h)
    hr = [torch.randn(1, 16, 4 * h, 4 * h), torch.randn(1, 32, 2 * h, 2 * h)]
    coords = torch.rand(3, 1, 2) * SIZE
    labels = torch.ones(3, 1, dtype=torch.int64)
    with torch.no_grad():
        for multimask in (True, False):
            m.train(not multimask)
            ref = m.forward_sam_heads(pix, hr, coords, labels, multimask=multimask)
            dec = heads.decode_all(m, pix, hr, coords, labels)
            low, ptr = heads.choose(m, dec, torch.full((3,), multimask))
            torch.testing.assert_close(low, ref.low_res_masks, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(ptr, ref.obj_ptr, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(dec.object_logits, ref.object_score_logits)
    m.eval()


@pytest.mark.parametrize("change", [{"soft_no_obj_ptr": True}, {"use_multimask_token_for_obj_ptr": False}])
def test_choose_follows_the_model_config(change):
    """The training choice is the model's own: a soft pointer gate, or the pointer from token 0
    even with multimask output, as ``forward_sam_heads`` does for that config."""
    torch.manual_seed(0)
    m = build_sam2(embedded_config().replace(image_size=SIZE, **change)).train()
    torch.manual_seed(1)
    h = SIZE // 16
    pix = torch.randn(3, 128, h, h)
    hr = [torch.randn(1, 16, 4 * h, 4 * h), torch.randn(1, 32, 2 * h, 2 * h)]
    coords = torch.rand(3, 1, 2) * SIZE
    labels = torch.ones(3, 1, dtype=torch.int64)
    with torch.no_grad():
        ref = m.forward_sam_heads(pix, hr, coords, labels, multimask=True)
        dec = heads.decode_all(m, pix, hr, coords, labels)
        low, ptr = heads.choose(m, dec, torch.full((3,), True))
    torch.testing.assert_close(low, ref.low_res_masks, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ptr, ref.obj_ptr, rtol=1e-5, atol=1e-5)


def test_video_step_picks_memories_with_the_official_stride():
    """``memory_temporal_stride_for_eval`` = 2: the memories of the official selection (every
    other frame beyond the previous one), not simply the last six frames."""
    torch.manual_seed(0)
    m = build_sam2(embedded_config().replace(image_size=SIZE, memory_temporal_stride_for_eval=2)).eval()
    seen = []
    real = m.condition_on_memory

    def spy(embed, memories, pointers, num_frames, **kw):
        seen.append(([tp for _, _, tp in memories], [d for _, d in pointers]))
        return real(embed, memories, pointers, num_frames, **kw)

    m.condition_on_memory = spy
    seed = next(s for s in range(50) if data.clip_example(s, 5, SIZE).source == "timelapse")
    with torch.no_grad():
        video_step(m, data.clip_example(seed, 5, SIZE), np.random.default_rng(0), objects=2, start=0)
    n = m.config.num_maskmem  # 7
    assert seen == [
        ([0], [1]),  # frame 1: frame 0 is the prompted frame
        ([0, n - 1], [2, 1]),  # frame 2: frame 1
        ([0, n - 1], [3, 1, 2]),  # frame 3: frame 2; the stride-2 slot is frame 0 (prompted)
        ([0, n - 2, n - 1], [4, 1, 2, 3]),  # frame 4: frames 2 (stride slot) and 3
    ]


@pytest.mark.parametrize("full_res, plain_bce", [(False, 0.0), (True, 10.0)])
def test_steps_give_finite_losses_and_gradients(tiny_model, full_res, plain_bce):
    m = tiny_model.train()
    rng = np.random.default_rng(0)
    m.zero_grad()
    loss, stats = image_step(m, [data.image_example(1, SIZE)], rng, objects=4, rounds=2, full_res=full_res,
                             plain_bce=plain_bce)
    loss.backward()
    assert torch.isfinite(loss) and "r1_iou" in stats
    assert m.image_encoder.trunk.patch_embed.proj.weight.grad.abs().sum() > 0
    assert m.sam_mask_decoder.iou_token.weight.grad.abs().sum() > 0
    m.zero_grad()
    seed = next(s for s in range(50) if data.clip_example(s, 3, SIZE).source == "timelapse")
    loss, stats = video_step(m, data.clip_example(seed, 3, SIZE), rng, objects=2, full_res=full_res,
                             plain_bce=plain_bce)
    loss.backward()
    assert torch.isfinite(loss) and "track_iou" in stats
    for p in (m.memory_encoder.out_proj.weight, m.memory_attention.layers[0].linear1.weight,
              m.obj_ptr_proj.layers[0].weight, m.maskmem_tpos_enc):
        assert p.grad is not None and p.grad.abs().sum() > 0
    m.eval()


def test_full_res_losses_score_the_upsampled_logits():
    """``full_res``: the losses see the logits at the input size, as inference thresholds them."""
    from napari_sam.training.steps import _scored

    dec = heads.Decoded(torch.randn(2, 4, SIZE // 4, SIZE // 4), torch.rand(2, 4), torch.randn(2, 4, 8),
                        torch.randn(2, 1))
    assert _scored(dec, SIZE, False) is dec.masks
    up = _scored(dec, SIZE, True)
    assert up.shape == (2, 4, SIZE, SIZE)
    torch.testing.assert_close(up[:, :, 1::4, 1::4].mean(), dec.masks.mean(), rtol=0.05, atol=0.05)


def test_video_step_both_ways_picks_memories_as_the_official_reverse_run(tiny_model, monkeypatch):
    """Prompted on frame 2 of 5: forward to 4, then backward to 0. In reverse the official
    predictor's "earlier" frames are later ones (already filled by the forward run): the
    memories (t_pos) and pointer distances each tracked frame gets, in order."""
    m = tiny_model.eval()
    seen = []
    real = m.condition_on_memory

    def spy(embed, memories, pointers, num_frames, **kw):
        seen.append(([tp for _, _, tp in memories], [d for _, d in pointers]))
        return real(embed, memories, pointers, num_frames, **kw)

    monkeypatch.setattr(m, "condition_on_memory", spy)
    seed = next(s for s in range(50) if data.clip_example(s, 5, SIZE).source == "timelapse")
    with torch.no_grad():
        loss, stats = video_step(m, data.clip_example(seed, 5, SIZE), np.random.default_rng(0), objects=2, start=2)
    assert torch.isfinite(loss) and "track_iou" in stats
    n = m.config.num_maskmem  # 7
    assert seen == [
        ([0], [1]),  # frame 3
        ([0, n - 1], [2, 1]),  # frame 4: frame 3 one step back
        ([0, n - 3, n - 2], [1, 2, 3]),  # frame 1 (reverse): frames 4, 3; pointers of 2 (prompt), 3, 4
        ([0, n - 4, n - 3, n - 1], [2, 1, 3, 4]),  # frame 0: frames 4, 3, 1
    ]


def test_lr_schedule():
    r = Recipe(iterations=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert lr_at(r, 0) == pytest.approx(1e-4) and lr_at(r, 9) == pytest.approx(1e-3)
    assert lr_at(r, 99) == pytest.approx(1e-4, rel=0.01)


def test_loop_resumes_exactly(tmp_path):
    """Two iterations in one go equal one, a stop, and a resumed second."""
    recipe = Recipe(iterations=2, images_per_step=1, objects_per_image=2, rounds=2, clip_length=2,
                    clip_objects=1, video_every=2, checkpoint_every=1, warmup=1)

    def fresh():
        torch.manual_seed(0)
        return build_sam2(embedded_config().replace(image_size=SIZE))

    whole = fresh()
    train(whole, recipe, tmp_path / "a", log=lambda s: None)
    part = fresh()
    train(part, Recipe(**{**recipe.__dict__, "iterations": 1}), tmp_path / "b", log=lambda s: None)
    resumed = fresh()
    train(resumed, recipe, tmp_path / "b", log=lambda s: None)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    assert (tmp_path / "a" / "weights.pt").is_file()


def test_frozen_image_encoder_stage(tmp_path):
    """``freeze_image_encoder``: the encoder keeps its weights bit for bit; the memory path
    and the decoder train."""
    torch.manual_seed(0)
    model = build_sam2(embedded_config().replace(image_size=SIZE))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = Recipe(iterations=2, images_per_step=1, objects_per_image=2, rounds=2, clip_length=2,
                    clip_objects=1, video_every=1, warmup=1, freeze_image_encoder=True)
    train(model, recipe, tmp_path, log=lambda s: None)
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("image_encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    for prefix in ("memory_attention.", "memory_encoder.", "sam_mask_decoder."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


def test_data_workers_make_the_same_data():
    """Data made ahead by worker processes equal the data made in line (a run does not depend
    on ``workers``)."""
    from napari_sam.training.loop import _data_stream

    recipe = Recipe(iterations=2, images_per_step=1, clip_length=2, video_every=2)
    here, ahead = list(_data_stream(recipe, 0, SIZE, 0)), list(_data_stream(recipe, 0, SIZE, 1))
    assert [c is None for _, c in here] == [True, False] == [c is None for _, c in ahead]
    for (ex_a, clip_a), (ex_b, clip_b) in zip(here, ahead):
        assert torch.equal(ex_a[0].images, ex_b[0].images) and torch.equal(ex_a[0].labels, ex_b[0].labels)
    assert torch.equal(here[1][1].images, ahead[1][1].images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_one_iteration_on_the_gpu(tmp_path):
    torch.manual_seed(0)
    model = build_sam2(embedded_config().replace(image_size=SIZE)).to("cuda")
    recipe = Recipe(iterations=1, images_per_step=1, objects_per_image=2, rounds=2, clip_length=2,
                    clip_objects=1, video_every=1, warmup=1, full_res_loss=True, plain_bce=10.0)
    train(model, recipe, tmp_path, log=lambda s: None)
    blob = torch.load(tmp_path / "weights.pt", map_location="cpu", weights_only=True)
    assert all(v.device.type == "cpu" for v in blob["model"].values())


def test_training_never_draws_held_out_seeds():
    """Generator seeds of 1,000 training iterations stay clear of the held-out ones (< 1_000)."""
    from napari_sam.training.loop import TRAIN_SEED_BASE

    for it in range(1000):
        base = TRAIN_SEED_BASE + 10 * it
        seeds = [data.generator_seeds(base + k, clip=False) for k in range(4)]
        seeds.append(data.generator_seeds(base + 9, clip=True))
        assert min(seeds) >= 1000 and base >= 1000
