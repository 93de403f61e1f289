"""VideoSession behaviour: input checks, lazy frames, flat memory, the pieces it is built from.

Numbers against the official predictor are in ``test_video_parity.py``; these tests use a
tiny reduced SAM 2 (128 px model input) with random weights.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import perturb_
from napari_sam.engine.masks.holes import fill_small_holes
from napari_sam.engine.video.memory_bank import COND, NONCOND, frames_in_reach, memory_layout, select_cond_frames
from napari_sam.engine.video.memory_store import FrameOutput, FrameOutputStore
from napari_sam.engine.video.session import VideoSession
from napari_sam.models.sam2 import build_sam2, reduced_config
from video_reference import moving_blobs

T, H, W = 8, 48, 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_sam2(reduced_config("2.1", image_size=128))
    return perturb_(m, seed=0, scale=0.06).eval()


@pytest.fixture(scope="module")
def frames():
    return moving_blobs(T, H, W)


def _session(model, frames, **kw):
    kw.setdefault("contrast_limits", (0, 255))
    return VideoSession(model, frames, **kw)


# ------------------------------------------------------------------ input checks
def test_bad_inputs_raise_clear_errors(model, frames):
    s = _session(model, frames)
    with pytest.raises(ValueError, match="outside"):
        s.add_prompts(0, 1, points=[[W + 5, 10]], labels=[1])
    with pytest.raises(ValueError, match="one entry per point"):
        s.add_prompts(0, 1, points=[[10, 10], [20, 20]], labels=[1])
    with pytest.raises(ValueError, match="out of range"):
        s.add_prompts(T, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(ValueError, match="out of range"):
        s.add_prompts(-1, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(ValueError, match="points .*or a box"):
        s.add_prompts(0, 1)
    with pytest.raises(ValueError, match="clear=True"):
        s.add_prompts(0, 1, box=[5, 5, 20, 20], clear=False)
    with pytest.raises(ValueError, match="shape"):
        s.add_mask(0, 1, np.ones((H + 1, W), bool))
    assert s.obj_ids == []  # nothing was created by the failed calls
    with pytest.raises(ValueError, match="no objects"):
        s.propagate()
    s.add_prompts(2, 1, points=[[20, 15]], labels=[1])
    with pytest.raises(ValueError, match="unknown object"):
        s.remove_object(7)
    with pytest.raises(ValueError, match="unknown object"):
        s.clear_frame(2, obj_id=7)
    with pytest.raises(ValueError, match="direction"):
        s.propagate("sideways")
    with pytest.raises(ValueError, match="out of range"):
        s.propagate(start=T)
    with pytest.raises(ValueError, match="max_frames"):
        s.propagate(max_frames=-1)
    s.clear_frame(2, obj_id=1)
    with pytest.raises(ValueError, match="prompts left"):
        s.propagate()


def test_objects_without_prompts_are_not_tracked(model, frames):
    s = _session(model, frames)
    s.add_prompts(2, 1, points=[[20, 15]], labels=[1])
    s.add_prompts(2, 2, points=[[40, 30]], labels=[1])
    list(s.propagate())
    s.clear_frame(2)  # every object's prompts on frame 2: none left anywhere
    s.add_prompts(5, 2, points=[[40, 30]], labels=[1])  # tracked frame, nothing to correct against
    assert s.prompted_frames(1) == [] and s.prompted_frames(2) == [5]
    out = list(s.propagate())
    assert [t for t, _, _ in out] == [5, 6, 7] and all(ids == [2] for _, ids, _ in out)


def test_rejects_a_sam1_model(frames):
    class Fake(torch.nn.Module):
        family = "sam1"

    with pytest.raises(ValueError, match="SAM 2"):
        VideoSession(Fake(), frames)


# ------------------------------------------------------------------ behaviour
def test_outputs_shapes_order_scores_and_directions(model, frames):
    s = _session(model, frames, fill_hole_area=0)
    a = s.add_prompts(3, "a", points=[[20, 15]], labels=[1])
    assert a.shape == (H, W) and a.dtype == np.float32
    s.add_mask(5, "b", np.pad(np.ones((10, 10), bool), ((20, H - 30), (30, W - 40))))
    out = list(s.propagate("both"))
    assert [t for t, _, _ in out] == [3, 4, 5, 6, 7, 3, 2, 1, 0]
    for t, ids, logits in out:
        assert ids == ["a", "b"] and logits.shape == (2, H, W) and logits.dtype == np.float32
        assert set(s.object_scores(t)) == {"a", "b"}
    assert s.object_scores(5)["b"] == 10.0  # a mask prompt: present by definition
    assert list(s.propagate("backward", start=0)) == []  # the official rule
    fwd = list(s.propagate("forward", start=2, max_frames=2))
    assert [t for t, _, _ in fwd] == [2, 3, 4]


def test_lazy_frames_read_one_at_a_time(model, frames):
    class Guarded:
        """An array that refuses to be read whole and counts frame reads."""

        def __init__(self, data):
            self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

        def __getitem__(self, idx):
            if not isinstance(idx, (int, np.integer)):
                raise AssertionError(f"read more than one frame: {idx!r}")
            self.reads.append(int(idx))
            return self.data[idx]

        def __array__(self, *a, **k):
            raise AssertionError("the whole stack was read")

    g = Guarded(frames)
    s = _session(model, g)
    s.add_prompts(1, 1, points=[[20, 15]], labels=[1])
    assert set(g.reads) == {1}
    for t, _, _ in s.propagate(max_frames=2):
        pass
    assert set(g.reads) == {1, 2, 3}


def test_any_dtype_and_grey_frames(model, frames):
    grey16 = frames[..., 0].astype(np.uint16) * 200
    s = VideoSession(model, grey16)
    s.add_prompts(0, 1, points=[[20, 15]], labels=[1])
    assert len(list(s.propagate())) == T


def test_embedding_store_gives_the_same_numbers(model, frames, tmp_path):
    from napari_sam.engine.store.embedding_store import EmbeddingStore

    plain = _session(model, frames, fill_hole_area=0)
    stored = _session(model, frames, fill_hole_area=0,
                      embeddings=EmbeddingStore(tmp_path / "emb", model, frames, (0, 255)))
    for s in (plain, stored):
        s.add_prompts(2, 1, points=[[20, 15]], labels=[1])
    for (t, _, a), (u, _, b) in zip(plain.propagate(), stored.propagate()):
        assert t == u and np.array_equal(a, b)


def test_flat_memory_window_and_disk_reads(model):
    """Only the frames the next step can attend to stay in RAM; a correction far back reads
    its memories from disk."""
    n = 40
    frames = moving_blobs(n, H, W)
    s = _session(model, frames, fill_hole_area=0)
    s.add_prompts(0, 1, points=[[20, 15]], labels=[1])
    cfg = model.config
    for t, _, _ in s.propagate():
        ram = s._store.ram_frames(1)
        assert set(ram) <= frames_in_reach(cfg, t, False, n)
        assert len(ram) <= cfg.max_obj_ptrs_in_encoder - 1
    assert s._store.ram_frames(1) != [] and 10 not in s._store.ram_frames(1)
    s.add_prompts(10, 1, points=[[25, 20]], labels=[1])  # reads frames 4..9 from disk
    assert s._store.ram_frames(1) == []
    assert len(list(s.propagate(start=10, max_frames=3))) == 4
    s.close()
    assert not os.path.exists(s._store.directory)


def test_fill_hole_area_fills_specks(model, frames):
    s = _session(model, frames, fill_hole_area=8)
    s.add_prompts(2, 1, points=[[20, 15]], labels=[1])
    for _, _, logits in s.propagate():
        pass
    low = s._objects[1].cond[2].low_res
    assert torch.equal(fill_small_holes(low, 8), low)  # stored logits are already filled


# ------------------------------------------------------------------ building blocks
def _holes_reference(logits: np.ndarray, max_area: int) -> np.ndarray:
    from skimage.measure import label

    out = logits.copy()
    lab = label(logits <= 0, connectivity=2)
    for i in range(1, lab.max() + 1):
        comp = lab == i
        if comp.sum() <= max_area:
            out[comp] = 0.1
    return out


def test_fill_small_holes_matches_connected_components():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 40, 40)).astype(np.float32) + 0.8
    got = fill_small_holes(torch.from_numpy(x), 8).numpy()
    for i in range(3):
        assert np.array_equal(got[i, 0], _holes_reference(x[i, 0], 8))
    assert not np.array_equal(got, x)
    assert fill_small_holes(torch.from_numpy(x), 0) is not None
    assert np.array_equal(fill_small_holes(torch.from_numpy(x), 0).numpy(), x)


def test_cond_frame_selection_matches_official():
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    rng = np.random.default_rng(1)
    for _ in range(200):
        cond = [int(t) for t in rng.choice(60, size=rng.integers(1, 9), replace=False)]
        frame, limit = int(rng.integers(0, 60)), int(rng.choice([-1, 2, 3, 5]))
        ref_sel, ref_unsel = select_closest_cond_frames(frame, {t: t for t in cond}, limit)
        sel, unsel = select_cond_frames(frame, cond, limit)
        assert sel == list(ref_sel) and sorted(unsel) == sorted(ref_unsel)


def test_memory_layout_rules():
    cfg = reduced_config("2.1").replace(memory_temporal_stride_for_eval=1)
    tracked = set(range(0, 30)) - {10}
    lay = memory_layout(cfg, 12, False, [10, 20], lambda t: t in tracked, 30)
    # conditioning frames first (slot 0), then frames 6..11 (slots 1..6), 10 is not a plain output
    assert lay.spatial[:2] == ((0, 10, COND), (0, 20, COND))
    assert [(p, t) for p, t, _ in lay.spatial[2:]] == [(1, 6), (2, 7), (3, 8), (4, 9), (6, 11)]
    # pointers: past conditioning frame 10 at +2, then 1..15 frames back (10 skipped, 0 and below end)
    assert lay.pointers[0] == (2, 10, COND)
    assert [d for d, _, _ in lay.pointers[1:]] == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert lay.ptr_norm == 15
    back = memory_layout(cfg, 12, True, [10, 20], lambda t: t in tracked, 30)
    assert [(p, t) for p, t, _ in back.spatial[2:]] == [(1, 18), (2, 17), (3, 16), (4, 15), (5, 14), (6, 13)]
    assert back.pointers[0] == (8, 20, COND)  # (12 - 20) * -1: signed, in the direction of travel
    strided = memory_layout(cfg.replace(memory_temporal_stride_for_eval=3), 20, False, [0],
                            lambda t: True, 30)
    assert [t for _, t, _ in strided.spatial[1:]] == [6, 9, 12, 15, 18, 19]  # every 3rd, plus the last
    limited = memory_layout(cfg.replace(max_cond_frames_in_attn=2), 12, False, [0, 10, 20],
                            lambda t: False, 30)
    assert [t for _, t, _ in limited.spatial] == [10, 20]  # 0 is left out ...
    assert (12, 0, COND) in limited.pointers  # ... but its pointer is within 15 frames
    assert all(s in (COND, NONCOND) for _, _, s in lay.spatial)


def test_memory_store_round_trip_is_exact(tmp_path):
    store = FrameOutputStore(5, (4, 3, 3), 8, 6, directory=tmp_path)
    store.add_object("x")
    mm = torch.randn(4, 3, 3).to(torch.bfloat16)
    out = FrameOutput(mm, torch.randn(8), torch.tensor(1.5), torch.randn(6, 6))
    store.put("x", 3, out)
    store.keep("x", set())
    back = store.get("x", 3)
    assert torch.equal(back.maskmem, mm) and back.maskmem.dtype == torch.bfloat16
    assert torch.equal(back.obj_ptr, out.obj_ptr) and float(back.score) == 1.5
    assert torch.equal(store.get_low_res("x", 3), out.low_res)
    assert store.has("x", 3) and not store.has("x", 2) and not store.has("x", 9)
    with pytest.raises(KeyError):
        store.get("x", 2)
    store.discard("x", 3)
    assert not store.has("x", 3)
    folder = store.directory
    store.close()
    assert not os.path.exists(folder)


def test_projection_cache_reuses_bounded_and_agrees(model, frames):
    from conftest import max_rel_err

    plain = _session(model, frames, fill_hole_area=0)
    cached = _session(model, frames, fill_hole_area=0, projection_cache_bytes=4 * 2**20)
    for s in (plain, cached):
        s.add_prompts(1, 1, points=[[20, 15]], labels=[1])
        s.add_prompts(1, 2, points=[[45, 30]], labels=[1])
    for (_, _, a), (_, _, b) in zip(plain.propagate(), cached.propagate()):
        assert max_rel_err(b, a) < 1e-5
    cache = cached._projections
    assert cache.hits > cache.misses > 0  # each memory frame projected once, reused after
    assert 0 < cache.used <= cache.budget


def test_projection_cache_invalidation_and_budget():
    from types import SimpleNamespace

    from napari_sam.engine.video.projection_cache import ProjectionCache

    def pm(n):  # a stand-in projected memory of n floats
        return SimpleNamespace(keys=[torch.zeros(n)], values=[])

    cache = ProjectionCache(budget_bytes=4 * 100)
    cache.put(((1, 2), ((4, NONCOND), (4, NONCOND))), pm(40))
    cache.put(((1, 2), ((0, COND), (2, COND))), pm(40))
    cache.invalidate(2, 4)
    assert cache.get(((1, 2), ((4, NONCOND), (4, NONCOND)))) is None
    assert cache.get(((1, 2), ((0, COND), (2, COND)))) is not None
    cache.put(((3,), ((5, NONCOND),)), pm(70))  # over budget together: the oldest goes
    assert len(cache) == 1 and cache.used == 280
    cache.put(((3,), ((6, NONCOND),)), pm(200))  # larger than the budget: not kept
    assert len(cache) == 1


def test_batching_objects_does_not_change_results(model, frames):
    from conftest import max_rel_err

    clicks = [[15, 12], [45, 30], [30, 40]]
    one, all_ = _session(model, frames, fill_hole_area=0, max_batch=1), _session(model, frames, fill_hole_area=0)
    assert all_.max_batch >= 3
    for s in (one, all_):
        for i, c in enumerate(clicks):
            s.add_prompts(1, i, points=[c], labels=[1])
    for (_, _, a), (_, _, b) in zip(one.propagate(), all_.propagate()):
        assert max_rel_err(b, a) < 1e-5
    with pytest.raises(ValueError, match="max_batch"):
        _session(model, frames, max_batch=0)


def test_a_session_leaves_the_process_allocator_alone(model, frames, monkeypatch):
    """Allocator tuning changes the whole napari process: only an explicit call may do it."""
    from napari_sam.engine import malloc_tuning

    monkeypatch.setattr(malloc_tuning, "_applied", None)  # not tried yet in this process
    s = _session(model, frames)
    s.add_prompts(0, 1, points=[[20, 20]], labels=[1])
    s.close()
    assert malloc_tuning._applied is None
    monkeypatch.setenv("NAPARI_SAM_MALLOC_TUNING", "0")
    assert malloc_tuning.tune_malloc() is False and malloc_tuning._applied is False
