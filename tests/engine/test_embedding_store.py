"""EmbeddingStore: bit-exact features, resume after a kill, refusals, concurrent readers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from napari_sam.engine.store.embedding_store import ATTRS_KEY, EmbeddingStore, weights_hash
from napari_sam.engine.image.family import transform_for
from napari_sam.engine.image.preprocess import estimate_contrast_limits, to_uint8_rgb
from napari_sam.engine.store.integrity import frame_checksum

HERE = Path(__file__).parent
T, H, W = 6, 40, 52


# ---- a tiny stand-in with the models' contract (family, image_size, encode_image -> dict) ----


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    channels: int = 16
    image_size: int = 32


class TinyEncoder(torch.nn.Module):
    """Patch conv (+ an upsampled second level for "sam2"), seeded weights, counts its calls."""

    def __init__(self, family="sam1", seed=0, name="tiny", config=TinyConfig(), delay=0.0):
        super().__init__()
        self.family, self.name, self.config = family, name, config
        self.image_size, self.mask_threshold, self.delay = config.image_size, 0.0, delay
        self.patch = torch.nn.Conv2d(3, config.channels, 4, stride=4)
        self.high = torch.nn.Conv2d(config.channels, 8, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        self.calls = 0

    def encode_image(self, x):
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        e = self.patch(x)
        if self.family == "sam1":
            return {"image_embed": e}
        return {"vision_feat": e, "high_res_0": self.high(F.interpolate(e, scale_factor=2.0))}


def make_frames(t=T, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, (t, H, W)).astype(np.uint16)


def reference(model, frame, limits):
    """What the store must hold: the model's own output on the official preprocessing."""
    x = transform_for(model).preprocess_frame(to_uint8_rgb(frame, limits))
    p = next(model.parameters())
    with torch.inference_mode():
        return {k: v.clone() for k, v in model.encode_image(x.to(p.device, p.dtype)).items()}


def assert_same(feats, ref):
    assert sorted(feats) == sorted(ref)
    for k in ref:
        assert feats[k].dtype == ref[k].dtype and feats[k].shape == ref[k].shape, k
        assert torch.equal(feats[k], ref[k]), (k, (feats[k] - ref[k]).abs().max())


def _real_sam1():
    from napari_sam.models.sam1 import Sam1Config, build_sam1

    from conftest import perturb_

    cfg = Sam1Config(
        encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,), image_size=128
    )
    return perturb_(build_sam1(cfg).eval(), seed=3)


def _real_sam2():
    from napari_sam.models.sam2 import build_sam2, reduced_config

    from conftest import perturb_

    return perturb_(build_sam2(reduced_config("2.1", image_size=128)).eval(), seed=4)


MODELS = {
    "tiny-sam1": lambda: TinyEncoder("sam1"),
    "tiny-sam2": lambda: TinyEncoder("sam2"),
    "sam1": _real_sam1,
    "sam2": _real_sam2,
}


@pytest.fixture(params=list(MODELS))
def model(request):
    return MODELS[request.param]()


def count_encodes(model) -> list:
    """Wrap ``model.encode_image`` (instance attribute) so each call is recorded."""
    calls, inner = [], model.encode_image

    def encode_image(x):
        calls.append(tuple(x.shape))
        return inner(x)

    model.encode_image = encode_image
    return calls


# ---- features --------------------------------------------------------------------------------


def test_features_bit_exact_and_reread_from_disk(model, tmp_path):
    frames = make_frames(t=3)
    store = EmbeddingStore(tmp_path / "s.zarr", model, frames)
    limits = estimate_contrast_limits(frames)
    assert store.contrast_limits == limits  # one pair for the stack, recorded
    refs = [reference(model, frames[t], limits) for t in range(3)]
    calls = count_encodes(model)
    assert_same(store.get(1), refs[1])  # computed on demand, written
    assert store.has(1) and not store.has(0) and store.missing() == [0, 2]
    assert store.precompute() == 2 and len(calls) == 3
    again = EmbeddingStore(tmp_path / "s.zarr", model, frames)
    for t in range(3):
        assert_same(again.get(t), refs[t])
    assert len(calls) == 3  # read back, not recomputed
    levels = again.levels
    assert levels == {k: tuple(v.shape[1:]) for k, v in refs[0].items()}
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    for k in refs[0]:
        arr = g["features"][k]
        assert arr.dtype == np.float32 and arr.chunks == (1, *levels[k])
    # every frame's checksum over exactly the reference features, written as it completed
    want = [frame_checksum(t, {k: v[0].float().numpy() for k, v in refs[t].items()}) for t in range(3)]
    assert g["checksum"][:].tolist() == want and all(w >> 32 == 1 for w in want)
    meta = g.attrs[ATTRS_KEY]
    assert meta["model"]["weights_hash"] == weights_hash(model)
    assert meta["preprocess"]["contrast_limits"] == list(limits)


def test_precompute_progress_and_generator():
    model, frames = TinyEncoder(), make_frames()
    store = EmbeddingStore(None, model, frames)
    seen = []
    assert store.precompute(lambda d, n: seen.append((d, n))) == T
    assert seen == [(i, T) for i in range(T + 1)]
    assert store.precompute() == 0 and model.calls == T
    gen_store = EmbeddingStore(None, TinyEncoder(), frames)
    it = gen_store.precompute_iter()
    assert [next(it) for _ in range(3)] == [(0, T), (1, T), (2, T)]
    it.close()  # cancelled between frames: what was stored stays
    assert gen_store.missing() == [2, 3, 4, 5] and gen_store.model.calls == 2
    assert list(gen_store.precompute_iter()) == [(2, T), (3, T), (4, T), (5, T), (6, T)]


def test_in_memory_store_and_shared_zarr_store():
    frames = make_frames()
    mem = EmbeddingStore(None, TinyEncoder(), frames)
    assert mem.path is None and len(mem) == T and not mem.has(0)
    assert_same(mem.get(4), reference(mem.model, frames[4], mem.contrast_limits))
    zstore = zarr.storage.MemoryStore()
    first = EmbeddingStore(zstore, TinyEncoder(), frames)
    list(zip(range(3), first.precompute_iter()))
    second_model = TinyEncoder()
    second = EmbeddingStore(zstore, second_model, frames)
    assert second.missing() == [2, 3, 4, 5]
    assert second.precompute() == 4 and second_model.calls == 4


def test_single_image_and_rgb():
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3)).astype(np.uint8)
    store = EmbeddingStore(None, TinyEncoder("sam2"), rgb)
    assert len(store) == 1 and store.contrast_limits == (0.0, 255.0)
    assert_same(store.get(0), reference(store.model, rgb, None))  # uint8 as it is
    with pytest.raises(IndexError):
        store.get(1)


def test_bf16_model_round_trips_exactly():
    model = TinyEncoder().to(torch.bfloat16)
    frames = make_frames(t=2)
    store = EmbeddingStore(None, model, frames)
    store.precompute()
    assert_same(store.get(1), reference(model, frames[1], store.contrast_limits))
    assert store.get(1)["image_embed"].dtype == torch.bfloat16


# ---- contrast limits and refusals ------------------------------------------------------------


def test_contrast_limits_given_and_reused(tmp_path):
    frames = make_frames()
    model = TinyEncoder()
    store = EmbeddingStore(tmp_path / "s", model, frames, contrast_limits=(100, 3000))
    assert store.contrast_limits == (100.0, 3000.0)
    assert_same(store.get(0), reference(model, frames[0], (100, 3000)))
    assert EmbeddingStore(tmp_path / "s", model, frames).contrast_limits == (100.0, 3000.0)
    assert EmbeddingStore(tmp_path / "s", model, frames, contrast_limits=np.array([100.0, 3000.0])).has(0)
    with pytest.raises(ValueError, match=r"contrast limits: store has \(100.0, 3000.0\), asked for \(0.0, 3000.0\)"):
        EmbeddingStore(tmp_path / "s", model, frames, contrast_limits=(0, 3000))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f, m: (f[:5], m), r"data shape: store has \(6, 40, 52\), asked for \(5, 40, 52\)"),
        (lambda f, m: (f.astype(np.int32), m), "data dtype: store has 'uint16', asked for 'int32'"),
        (lambda f, m: (np.where(np.arange(W) == 7, f + 1, f).astype(f.dtype), m), r"data content \(sampled pixels differ\)"),
        (lambda f, m: (f, TinyEncoder(seed=1)), "model weights hash"),
        (lambda f, m: (f, TinyEncoder(name="other")), "model name: store has 'tiny', asked for 'other'"),
        (lambda f, m: (f, TinyEncoder(config=TinyConfig(channels=8))), "model config"),
        (lambda f, m: (f, TinyEncoder("sam2")), "model family.*preprocessing kind: store has 'sam1-image-predictor'"),
        (lambda f, m: (f, m.to(torch.float64)), "model dtype: store has 'torch.float32', asked for 'torch.float64'"),
    ],
)
def test_refuses_other_data_or_model(tmp_path, change, message):
    frames, model = make_frames(), TinyEncoder()
    EmbeddingStore(tmp_path / "s", model, frames).get(0)
    other_frames, other_model = change(frames, model)
    with pytest.raises(ValueError, match=message) as err:
        EmbeddingStore(tmp_path / "s", other_model, other_frames)
    assert str(tmp_path / "s") in str(err.value)


def test_refuses_other_format_and_foreign_paths(tmp_path):
    frames, model = make_frames(), TinyEncoder()
    EmbeddingStore(tmp_path / "s", model, frames)
    g = zarr.open_group(tmp_path / "s", mode="r+")
    meta = dict(g.attrs[ATTRS_KEY])
    g.attrs[ATTRS_KEY] = {**meta, "format_version": 99}
    with pytest.raises(ValueError, match="format version 99"):
        EmbeddingStore(tmp_path / "s", model, frames)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        EmbeddingStore(tmp_path / "file.txt", model, frames)
    with pytest.raises(ValueError, match="not a zarr store"):
        EmbeddingStore(tmp_path, model, frames)
    other = zarr.open_group(tmp_path / "other.zarr", mode="w")
    other.create_array("x", shape=(2,), dtype="uint8")
    with pytest.raises(ValueError, match="not an embedding store"):
        EmbeddingStore(tmp_path / "other.zarr", model, frames)
    zarr.create_array(tmp_path / "arr.zarr", shape=(2,), dtype="uint8")
    with pytest.raises(ValueError, match="zarr array"):
        EmbeddingStore(tmp_path / "arr.zarr", model, frames)


# ---- resume ----------------------------------------------------------------------------------


def test_half_written_frame_reads_as_missing_and_is_recomputed(tmp_path):
    frames, model = make_frames(), TinyEncoder()
    store = EmbeddingStore(tmp_path / "s", model, frames)
    orig = store._checksum

    class CrashAfterFeatures:
        """The real flag array, but the process "dies" when frame 3's flag is due."""

        def __getitem__(self, k):
            return orig[k]

        def __setitem__(self, k, v):
            if k == 3:
                raise KeyboardInterrupt("killed between features and flag")
            orig[k] = v

    store._checksum = CrashAfterFeatures()
    with pytest.raises(KeyboardInterrupt):
        store.precompute()
    g = zarr.open_group(tmp_path / "s", mode="r")
    written = g["features"]["image_embed"][3]
    assert np.abs(written).max() > 0  # the features of frame 3 are on disk ...
    fresh = TinyEncoder()
    resumed = EmbeddingStore(tmp_path / "s", fresh, frames)
    assert not resumed.has(3) and resumed.missing() == [3, 4, 5]  # ... but frame 3 is not valid
    assert resumed.precompute() == 3 and fresh.calls == 3
    for t in range(T):
        assert_same(resumed.get(t), reference(model, frames[t], resumed.contrast_limits))
    assert fresh.calls == 3


def _script(body: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, json, time
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
        import numpy as np, torch
        from napari_sam.engine.store.embedding_store import EmbeddingStore
        from test_embedding_store import TinyEncoder, make_frames
        """
    ) + textwrap.dedent(body)


def _spawn(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(_script(body))
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _n_complete(path) -> int:
    try:
        return int(np.count_nonzero(zarr.open_array(path / "checksum", mode="r")[:]))
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, KeyError):
        return 0


def test_resume_after_killing_a_real_process(tmp_path):
    n = 10
    path = tmp_path / "s.zarr"
    proc = _spawn(tmp_path, "writer", f"EmbeddingStore({str(path)!r}, TinyEncoder(delay=0.4), make_frames({n})).precompute()")
    deadline = time.monotonic() + 180
    while _n_complete(path) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # land the kill somewhere inside the next frame's work
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _n_complete(path)
    assert 3 <= done < n
    model, frames, ref_model = TinyEncoder(), make_frames(n), TinyEncoder()
    store = EmbeddingStore(path, model, frames)
    assert store.missing() == list(range(done, n))
    for t in range(done):
        assert_same(store.get(t), reference(ref_model, frames[t], store.contrast_limits))
    assert model.calls == 0  # the killed process's frames are reused, not recomputed
    assert store.precompute() == n - done and model.calls == n - done
    for t in range(n):
        assert_same(store.get(t), reference(ref_model, frames[t], store.contrast_limits))


# ---- inputs ----------------------------------------------------------------------------------


class CountingArray:
    """A real array-like recording how it is read."""

    def __init__(self, data):
        self._data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._data[key]


def test_reads_frames_lazily():
    frames = make_frames()
    arr = CountingArray(frames)
    store = EmbeddingStore(None, TinyEncoder(), arr, contrast_limits=(0, 4000))
    assert len(arr.reads) == 1 and isinstance(arr.reads[0], tuple)  # the signature's strided read
    arr.reads.clear()
    store.get(2)
    store.precompute()
    assert arr.reads == [2, 0, 1, 3, 4, 5]  # each frame read once, alone
    arr.reads.clear()
    store.get(2)
    assert arr.reads == []


def test_zarr_and_dask_inputs(tmp_path):
    frames = make_frames()
    z = zarr.create_array(tmp_path / "in.zarr", shape=frames.shape, chunks=(1, 16, 16), dtype=frames.dtype)
    z[:] = frames
    ref_store = EmbeddingStore(None, TinyEncoder(), frames)
    for src in (z, da.from_array(frames, chunks=(1, 20, 20))):
        store = EmbeddingStore(None, TinyEncoder(), src)
        assert store.signature == ref_store.signature
        assert store.contrast_limits == ref_store.contrast_limits
        assert_same(store.get(5), ref_store.get(5))
    # a lazily generated dask stack of many frames: the signature samples each frame once,
    # then only what is asked for gets computed
    made = []

    def gen(block_info=None):
        made.append(block_info[None]["chunk-location"][0])
        return make_frames(1, seed=made[-1])

    many = da.map_blocks(gen, dtype=np.uint16, chunks=((1,) * 400, (H,), (W,)))
    store = EmbeddingStore(None, TinyEncoder(), many, contrast_limits=(0, 4000))
    assert len(store) == 400 and sorted(made) == list(range(400))
    made.clear()
    assert_same(store.get(123), reference(TinyEncoder(), make_frames(1, seed=123)[0], (0, 4000)))
    assert made == [123] and store.model.calls == 1 and store.missing()[:3] == [0, 1, 2]


# ---- concurrency -----------------------------------------------------------------------------


def test_thread_readers_while_writing(tmp_path):
    frames, model = make_frames(), TinyEncoder(delay=0.05)
    refs = [reference(model, frames[t], estimate_contrast_limits(frames)) for t in range(T)]
    model.calls = 0
    store = EmbeddingStore(tmp_path / "s", model, frames)
    errors, checked = [], []

    def reader():
        try:
            mine = EmbeddingStore(tmp_path / "s", model, frames)
            seen = set()
            while len(seen) < T:
                for t in range(T):
                    if t not in seen and mine.has(t):
                        assert_same(mine.get(t), refs[t])
                        seen.add(t)
            checked.append(len(seen))
        except Exception as e:  # noqa: BLE001 — surfaced below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    store.precompute()
    for th in threads:
        th.join(60)
    assert not errors and checked == [T] * 3
    assert model.calls == T  # readers only read complete frames, never encode
    # several threads asking for the same missing frame at once: all get the exact features
    mem = EmbeddingStore(None, TinyEncoder(delay=0.05), frames)
    results = [None] * 4
    ths = [threading.Thread(target=lambda i=i: results.__setitem__(i, mem.get(4))) for i in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    for r in results:
        assert_same(r, refs[4])


def test_two_writer_and_two_reader_processes(tmp_path):
    n = 8
    path = tmp_path / "s.zarr"
    writer = f"""
        m = TinyEncoder(delay=0.2)
        s = EmbeddingStore({str(path)!r}, m, make_frames({n}))
        print(json.dumps({{"encoded": s.precompute(), "calls": m.calls}}))
    """
    reader = f"""
        import hashlib
        path = {str(path)!r}
        while True:
            try:
                s = EmbeddingStore(path, TinyEncoder(), make_frames({n}))
                break
            except Exception:
                time.sleep(0.05)
        seen, deadline = {{}}, time.monotonic() + 240
        while len(seen) < {n} and time.monotonic() < deadline:
            for t in range({n}):
                if t not in seen and s.has(t):
                    f = s.get(t)
                    seen[t] = {{k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in f.items()}}
            time.sleep(0.01)
        print(json.dumps({{"seen": seen, "calls": s.model.calls}}))
    """
    procs = [_spawn(tmp_path, f"w{i}", writer) for i in range(2)] + [_spawn(tmp_path, f"r{i}", reader) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    model, frames, ref_model = TinyEncoder(), make_frames(n), TinyEncoder()
    store = EmbeddingStore(path, model, frames)
    assert store.is_complete()
    for t in range(n):
        ref = reference(ref_model, frames[t], store.contrast_limits)
        assert_same(store.get(t), ref)
        want = {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in ref.items()}
        for r in outs[2:]:
            assert r["seen"][str(t)] == want
    assert all(r["calls"] == 0 for r in outs[2:])  # readers never encoded
    encoded = [w["encoded"] for w in outs[:2]]
    assert n <= sum(encoded) <= 2 * n and all(w["calls"] == w["encoded"] for w in outs[:2])
    assert model.calls == 0
