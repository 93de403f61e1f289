"""EmbeddingStore integrity: damaged frames are found and re-encoded, damaged metadata is named."""

from __future__ import annotations

import json
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sam.engine.store.embedding_store import ATTRS_KEY, EmbeddingStore, model_identity
from napari_sam.engine.frames import as_frame_stack, data_signature
from napari_sam.engine.image.preprocess import estimate_contrast_limits

from test_embedding_store import TinyEncoder, assert_same, make_frames, reference

N = 4


def chunk_file(root: Path, array: str, t: int) -> Path:
    """The file that holds frame ``t`` of ``root/array`` (whatever the chunk key encoding)."""
    arr = zarr.open_array(root / array, mode="r")
    return root / array / arr.metadata.encode_chunk_key((t,) + (0,) * (arr.ndim - 1))


def flag_array(root: Path) -> str:
    """The store's one per-frame completion array (the only array beside ``features``)."""
    (name,) = [p.name for p in root.iterdir() if p.is_dir() and p.name != "features"]
    return name


def filled(tmp_path, n=N):
    frames = make_frames(t=n)
    path = tmp_path / "s.zarr"
    EmbeddingStore(path, TinyEncoder("sam2"), frames).precompute()
    return path, frames


def reopen(path, frames):
    model = TinyEncoder("sam2")
    return EmbeddingStore(path, model, frames), model


def refs(frames):
    limits = estimate_contrast_limits(frames)
    return [reference(TinyEncoder("sam2"), f, limits) for f in frames]


def warns_damaged(path, t, extra=""):
    return pytest.warns(UserWarning, match=rf"{re.escape(str(path))}.*frame {t}\b{extra}")


def quietly_equal(store, t, ref):
    """``store.get(t)`` equals ``ref`` and raises no warning (the frame is sound again)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(store.get(t), ref)


def flip_byte(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))


def test_deleted_chunk_is_missing_and_reencoded(tmp_path):
    path, frames = filled(tmp_path)
    chunk_file(path, "features/high_res_0", 2).unlink()
    store, model = reopen(path, frames)
    assert store.missing() == [2] and not store.has(2) and store.has(1) and not store.is_complete()
    ref = refs(frames)
    quietly_equal(store, 2, ref[2])  # re-encoded (it was missing, nothing to warn about)
    assert model.calls == 1 and store.missing() == [] and store.precompute() == 0
    for t in range(N):
        quietly_equal(store, t, ref[t])
    assert model.calls == 1


def test_flipped_bytes_are_detected_and_reencoded(tmp_path):
    path, frames = filled(tmp_path)
    flip_byte(chunk_file(path, "features/vision_feat", 1))
    store, model = reopen(path, frames)
    ref = refs(frames)
    with warns_damaged(path, 1):
        assert_same(store.get(1), ref[1])
    assert model.calls == 1
    quietly_equal(store, 1, ref[1])  # repaired on disk: read back, not encoded again
    assert model.calls == 1
    again, again_model = reopen(path, frames)
    quietly_equal(again, 1, ref[1])
    assert again_model.calls == 0


def test_nans_written_through_zarr_are_detected(tmp_path):
    path, frames = filled(tmp_path)
    arr = zarr.open_array(path / "features" / "high_res_0", mode="r+")
    arr[3, 0, 5, 5] = np.nan  # a valid chunk, written by zarr itself
    assert np.isnan(zarr.open_array(path / "features" / "high_res_0", mode="r")[3]).sum() == 1
    store, model = reopen(path, frames)
    with warns_damaged(path, 3, ".*NaN"):
        feats = store.get(3)
    assert_same(feats, refs(frames)[3])
    assert model.calls == 1 and all(bool(v.isfinite().all()) for v in feats.values())


def test_truncated_chunks_name_the_store(tmp_path):
    path, frames = filled(tmp_path)
    f = chunk_file(path, "features/vision_feat", 0)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    flags = flag_array(path)
    g = chunk_file(path, flags, 2)
    g.write_bytes(g.read_bytes()[:-1])  # the completion chunk of frame 2, cut short
    store, model = reopen(path, frames)
    assert store.missing() == [2]  # an unreadable flag counts as not complete
    ref = refs(frames)
    with warns_damaged(path, 0, ".*cannot be read"):
        assert_same(store.get(0), ref[0])
    assert store.precompute() == 1 and model.calls == 2 and store.missing() == []
    for t in range(N):
        quietly_equal(store, t, ref[t])


def _store_files(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("which", ["root", "flags", "features", "level"])
@pytest.mark.parametrize("text", ['{"zarr_format": 3, "node_ty', "{}", ""])
def test_corrupt_zarr_json_names_the_store_and_changes_nothing(tmp_path, which, text):
    path, frames = filled(tmp_path)
    meta = {
        "root": path / "zarr.json",
        "flags": path / flag_array(path) / "zarr.json",
        "features": path / "features" / "zarr.json",
        "level": path / "features" / "vision_feat" / "zarr.json",
    }[which]
    meta.write_text(text)
    before = _store_files(path)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        store, _ = reopen(path, frames)
        store.precompute()
        store.get(0)
    assert "damaged" in str(err.value) and "zarr.json" in str(err.value)
    assert _store_files(path) == before  # nothing overwritten, nothing lost


def test_verify_marks_damaged_frames_missing(tmp_path):
    path, frames = filled(tmp_path, n=5)
    flip_byte(chunk_file(path, "features/high_res_0", 0))
    swapped = chunk_file(path, "features/vision_feat", 3).read_bytes()
    chunk_file(path, "features/vision_feat", 1).write_bytes(swapped)  # a sound chunk, wrong frame
    zarr.open_array(path / "features" / "vision_feat", mode="r+")[2, 3, 1, 1] = np.inf
    chunk_file(path, "features/vision_feat", 4).unlink()
    store, model = reopen(path, frames)
    assert store.missing() == [4]
    assert store.verify() == [0, 1, 2]
    assert store.missing() == [0, 1, 2, 4] and model.calls == 0
    assert store.precompute() == 4 and model.calls == 4 and store.verify() == []
    ref = refs(frames)
    for t in range(5):
        quietly_equal(store, t, ref[t])


def test_store_of_the_previous_format_is_rebuilt(tmp_path):
    """A format-1 store (a ``complete`` uint8 flag, no checksums) cannot be verified: it is
    rebuilt in place, with a warning naming it; every frame is encoded again."""
    frames, model = make_frames(t=N), TinyEncoder("sam2")
    limits = estimate_contrast_limits(frames)
    ref = refs(frames)
    record = {
        "format_version": 1,
        "data": data_signature(as_frame_stack(frames)),
        "model": model_identity(model),
        "preprocess": {"kind": "sam2-video-loader", "image_size": 32, "contrast_limits": list(limits)},
    }
    path = tmp_path / "old.zarr"
    g = zarr.open_group(path, mode="w")
    g.attrs[ATTRS_KEY] = json.loads(json.dumps(record))
    flags = g.create_array("complete", shape=(N,), chunks=(1,), dtype="uint8", fill_value=0, compressors=None)
    fg = g.create_group("features")
    for k, v in ref[0].items():
        arr = fg.create_array(k, shape=(N, *v.shape[1:]), chunks=(1, *v.shape[1:]), dtype="float32",
                              fill_value=0.0, compressors=None, attributes={"torch_dtype": "torch.float32"})
        for t in range(N):
            arr[t] = ref[t][k][0].numpy()
    fg["vision_feat"][1] = 0.0  # silently damaged: a format-1 store cannot tell
    flags[:] = 1
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}.*earlier napari-sam.*re-encoded"):
        store = EmbeddingStore(path, model, frames)
    assert store.missing() == list(range(N))
    assert store.precompute() == N and model.calls == N
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, again_model = reopen(path, frames)
    assert again.missing() == [] and "complete" not in zarr.open_group(path, mode="r")
    for t in range(N):
        quietly_equal(again, t, ref[t])
    assert again_model.calls == 0


def test_threads_creating_one_store_at_once_see_no_damage(tmp_path):
    """Arrays and groups being created by another thread are not mistaken for damage."""
    frames = make_frames(t=N)
    ref = refs(frames)
    for attempt in range(4):
        path = tmp_path / f"s{attempt}.zarr"
        barrier, errors, got = threading.Barrier(N), [], {}

        def work(t):
            try:
                barrier.wait()
                got[t] = EmbeddingStore(path, TinyEncoder("sam2"), frames).get(t)
            except Exception as e:  # noqa: BLE001 — surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(N)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        for t in range(N):
            assert_same(got[t], ref[t])
        assert reopen(path, frames)[0].missing() == []
