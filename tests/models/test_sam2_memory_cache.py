"""The exact fast memory-attention path equals the plain path (relative 1e-5).

Plain: memories and pointers concatenated as the official code does (temporal encoding
added to the positions before ``k_proj``), one copy of the frame per object. Fast:
per-memory cached projections reused at other temporal positions, the frame's layer-0
work computed once for all objects (and shared between calls via ``memory_frame_cache``).
"""

from __future__ import annotations

import pytest
import torch

from conftest import max_rel_err, perturb_
from napari_sam.models.sam2 import build_sam2, reduced_config
from napari_sam.models.sam2.positions import sine_1d

TOL = 1e-5


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def model(request):
    torch.manual_seed(0)
    m = build_sam2(reduced_config(request.param, memory_attention_layers=3))
    perturb_(m, seed=3)
    with torch.no_grad():  # make the temporal terms matter
        m.maskmem_tpos_enc.mul_(40.0)
    return m


def _plain(model, image_embed, memories, ptrs, num_frames):
    """Official concatenation + the plain module, one frame copy per object."""
    cfg = model.config
    B = memories[0][0].shape[0]
    C, M = cfg.d_model, cfg.mem_dim
    seq = lambda x: x.flatten(2).transpose(1, 2)  # noqa: E731
    pos = seq(model.memory_pos_enc())
    tok, tok_pos = [], []
    for feats, _, t_pos in memories:
        tok.append(seq(feats))
        tok_pos.append((pos + model.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1].view(1, 1, M)).expand(B, -1, -1))
    ptr = torch.stack([p for p, _ in ptrs], dim=1)  # (B, P, C)
    if cfg.add_tpos_enc_to_obj_ptrs:
        t = torch.tensor([float(d) for _, d in ptrs]) / (min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1)
        ppos = model.obj_ptr_tpos_proj(sine_1d(t, C if cfg.proj_tpos_enc_in_obj_ptrs else M))
    else:
        ppos = torch.zeros(len(ptrs), M)
    split = C // M
    tok.append(ptr.reshape(B, -1, M))
    tok_pos.append(ppos.repeat_interleave(split, dim=0).expand(B, -1, -1))
    curr = seq(image_embed).expand(B, -1, -1)
    out = model.memory_attention(curr, seq(model.image_pos_enc()), torch.cat(tok, 1), torch.cat(tok_pos, 1),
                                 num_obj_ptr_tokens=len(ptrs) * split)
    return out.transpose(1, 2).reshape(B, C, *image_embed.shape[-2:])


@torch.no_grad()
def test_cached_and_shared_paths_equal_plain(model):
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    n, B = cfg.feat_size, 3
    image = torch.randn(1, cfg.d_model, n, n, generator=g) * 2
    frames = {t: torch.randn(B, cfg.mem_dim, n, n, generator=g) for t in range(8)}
    ptrs = {t: torch.randn(B, cfg.d_model, generator=g) for t in range(8)}
    cache = {}  # memory frame -> ProjectedMemory, as the video engine would keep them
    frame_cache = model.memory_frame_cache(image)
    worst = 0.0
    for current in (5, 6, 7):  # the memories age: the same cache serves other t_pos
        chosen = [0] + [t for t in range(max(1, current - 6), current)]
        memories = [(frames[0], None, 0)] + [(frames[t], None, cfg.num_maskmem - (current - t)) for t in chosen[1:]]
        pointer_list = [(ptrs[0], current)] + [(ptrs[t], current - t) for t in chosen[1:]]
        plain = _plain(model, image, memories, pointer_list, num_frames=30)
        for t in chosen:
            if t not in cache:
                cache[t] = model.project_memory(frames[t])
        cached = [(cache[t], None, t_pos) for t, (_, _, t_pos) in zip(chosen, memories)]
        fast = model.condition_on_memory(image, cached, pointer_list, 30, frame_cache=frame_cache)
        uncached = model.condition_on_memory(image.expand(B, -1, -1, -1), memories, pointer_list, 30)
        for out in (fast, uncached):
            err = max_rel_err(out, plain)
            worst = max(worst, err)
            assert err <= TOL, err
        # one object alone gives its row of the batched result
        single = model.condition_on_memory(
            image, [(f[1:2], None, t) for f, _, t in memories], [(p[1:2], d) for p, d in pointer_list], 30)
        assert max_rel_err(single, fast[1:2]) <= TOL
    print(f"[parity] cached/shared memory attention vs plain: {worst:.2e}")


@torch.no_grad()
def test_projected_memory_batches_follow_objects(model):
    """A cache made for B objects is per object: slicing the inputs slices the cache."""
    cfg = model.config
    g = torch.Generator().manual_seed(2)
    n = cfg.feat_size
    feats = torch.randn(2, cfg.mem_dim, n, n, generator=g)
    both = model.project_memory(feats)
    one = model.project_memory(feats[1:])
    for a, b in zip(both.keys + both.values, one.keys + one.values):
        assert max_rel_err(a[1:], b) <= TOL
