"""Registry, download and checkpoint-loading rules: every bad input gets a clear message."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading
from dataclasses import replace

import pytest
import torch

import napari_sam as ns
from napari_sam import checkpoints, registry
from napari_sam.checkpoints import CheckpointError


@pytest.fixture
def http_dir(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / 'srv'``; yields (dir, base_url)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("NAPARI_SAM_OFFLINE", raising=False)


def _fake_info(url: str, payload: bytes, name="sam_vit_b") -> registry.ModelInfo:
    info = registry.model_info(name)
    return replace(info, url=url, sha256=hashlib.sha256(payload).hexdigest(), filename="test_weights.pth")


def test_list_models_names_and_facts():
    models = {m.name: m for m in ns.list_models()}
    expected = {"sam_vit_b", "sam_vit_l", "sam_vit_h"} | {
        f"{p}_hiera_{v}" for p in ("sam2", "sam2.1") for v in ("tiny", "small", "base_plus", "large")
    }
    assert expected <= set(models)
    assert models["sam_vit_b"].family == "sam1" and models["sam2.1_hiera_tiny"].family == "sam2"
    assert models["sam_vit_b"].sha256 == "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    assert models["sam_vit_b"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert models["sam2.1_hiera_tiny"].url.endswith("/092824/sam2.1_hiera_tiny.pt")
    assert models["sam2_hiera_large"].url.endswith("/072824/sam2_hiera_large.pt")
    assert models["sam_vit_b"].size == 375_042_383
    assert not any(m.cached for m in models.values() if not m.bundled)  # empty test cache


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "c"))
    info = registry.model_info("sam_vit_b")
    assert info.path == tmp_path / "c" / "sam_vit_b_01ec64.pth"
    info.path.parent.mkdir()
    _file_of_size(info.path, info.size)
    assert info.cached


def _file_of_size(path, size: int) -> None:
    """A (sparse) file of ``size`` bytes: as large as the official file, without writing it."""
    with open(path, "wb") as f:
        f.truncate(size)


#: Bytes a torch.save zip file spends per tensor besides its data (record header, pickle
#: entry, alignment): the three files whose exact size is published agree to 0.005 %.
ZIP_BYTES_PER_TENSOR = 320


def _estimated_file_size(info) -> int:
    with torch.device("meta"):
        sd = registry.build_model(info).state_dict()
    return sum(t.numel() * t.element_size() + ZIP_BYTES_PER_TENSOR for t in sd.values())


def test_every_official_file_has_a_size():
    """Exact where published; else the architecture's tensor bytes + zip overhead ("about")."""
    official = [m for m in ns.list_models() if not m.bundled]
    exact = {m.name: m.size for m in official if m.size_exact}
    assert exact == {"sam_vit_b": 375_042_383, "sam_vit_h": 2_564_550_879, "sam2.1_hiera_tiny": 156_008_466,
                     "edgetam": 56_116_523}
    for m in official:
        est = _estimated_file_size(m)
        # EdgeTAM: 982 tensors with long names, ~350 bytes of zip overhead each (not ~320): 5.2e-4 off
        tol = 1e-3 if m.name == "edgetam" else 1e-4
        assert m.size is not None and abs(m.size - est) / m.size < tol, (m.name, m.size, est)
        mib = f"{m.size / 2**20:,.0f} MiB"
        assert m.size_text == (mib if m.size_exact else f"about {mib}")
    assert registry.model_info("sam2.1_hiera_large").size_text == "about 856 MiB"
    assert "size unknown" not in {m.size_text for m in ns.list_models()}


@pytest.mark.parametrize("name", ["sam_vit_b", "sam2_hiera_small"])
def test_a_file_of_another_size_is_not_taken_for_the_cached_model(name):
    """A truncated or foreign file at the cache path is not "cached" (nor the default); a file
    of the official size is, its SHA-256 checked when it loads."""
    info = registry.model_info(name)
    info.path.parent.mkdir(parents=True, exist_ok=True)
    assert info.cache_state == "missing" and not info.cached
    info.path.write_bytes(b"half a download")
    assert info.cache_state == "other size" and not info.cached
    assert registry.default_model() == "embedded"
    _file_of_size(info.path, info.size)
    assert info.cache_state == "cached" and info.cached
    assert registry.default_model() == name


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'sam_vit_x'.*sam_vit_b"):
        ns.load_model("sam_vit_x")


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope" / "sam_vit_b.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ns.load_model("sam_vit_b", checkpoint=missing, device="cpu")


def test_download_verifies_and_caches(http_dir, online):
    root, base = http_dir
    payload = os.urandom(4096)
    (root / "w.pth").write_bytes(payload)
    info = _fake_info(base + "w.pth", payload)
    path = checkpoints.fetch(info)
    assert path == info.path and path.read_bytes() == payload
    (root / "w.pth").unlink()  # the second call must not need the server
    assert checkpoints.fetch(info) == path


def test_corrupt_download_is_removed_and_reported(http_dir, online):
    root, base = http_dir
    (root / "w.pth").write_bytes(b"truncated")
    info = _fake_info(base + "w.pth", b"the real file")
    with pytest.raises(CheckpointError) as err:
        checkpoints.fetch(info)
    msg = str(err.value)
    assert info.url in msg and str(info.path) in msg and "SHA-256" in msg
    assert not info.path.exists()
    assert not list(info.path.parent.glob("*test_weights*"))  # no partial leftovers


def test_cached_file_with_another_hash_is_moved_aside_and_replaced(http_dir, online):
    root, base = http_dir
    payload = b"good weights"
    (root / "w.pth").write_bytes(payload)
    info = _fake_info(base + "w.pth", payload)
    info.path.parent.mkdir(parents=True, exist_ok=True)
    info.path.write_bytes(b"good wei")  # truncated, or a file the user put there
    with pytest.warns(UserWarning, match="SHA-256") as warned:
        assert checkpoints.fetch(info).read_bytes() == payload
    aside = [p for p in info.path.parent.iterdir() if p != info.path]
    assert len(aside) == 1 and aside[0].read_bytes() == b"good wei"  # kept, not deleted
    assert str(aside[0]) in str(warned[0].message) and str(info.path) in str(warned[0].message)


def test_offline_a_file_with_another_hash_is_kept(monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    info = _fake_info("http://127.0.0.1:9/w.pth", b"the official file")
    info.path.parent.mkdir(parents=True, exist_ok=True)
    info.path.write_bytes(b"my own fine-tuned weights")
    with pytest.raises(CheckpointError) as err:
        checkpoints.fetch(info)
    msg = str(err.value)
    assert str(info.path) in msg and "SHA-256" in msg and "differs" in msg and "kept" in msg
    assert "checkpoint=" in msg  # how to load it as it is
    assert info.path.read_bytes() == b"my own fine-tuned weights"
    assert sorted(p.name for p in info.path.parent.iterdir()) == [info.path.name]


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/sam.pth"


def test_no_network_says_where_to_put_the_file(online):
    info = _fake_info(_closed_port_url(), b"whatever")
    with pytest.raises(CheckpointError) as err:
        checkpoints.fetch(info)
    msg = str(err.value)
    assert "No network?" in msg and str(info.path) in msg and info.url in msg
    assert not info.path.exists()


def test_offline_mode_never_downloads(monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    info = registry.model_info("sam2.1_hiera_tiny")
    with pytest.raises(CheckpointError, match="put it at .*sam2.1_hiera_tiny.pt"):
        ns.load_model("sam2.1_hiera_tiny", device="cpu")
    assert not info.path.exists()


class _Exploit:
    """Unpickling this would create a file: a checkpoint must never run code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_code_in_checkpoint_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Exploit(str(target))}, path)
    with pytest.raises(CheckpointError, match="never run"):
        checkpoints.read_state_dict(path)
    assert not target.exists()


def test_truncated_checkpoint_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        checkpoints.read_state_dict(path)


def test_describe_recognises_families():
    vit = {"image_encoder.patch_embed.proj.weight": torch.empty(768, 3, 16, 16),
           **{f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1) for i in range(12)}}
    assert checkpoints.describe(vit) == "SAM 1 vit_b (ViT width 768, 12 blocks)"
    hiera = {"image_encoder.trunk.patch_embed.proj.weight": torch.empty(96, 3, 7, 7),
             **{f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.empty(1) for i in range(12)}}
    assert checkpoints.describe(hiera) == "SAM 2.0 hiera_tiny"
    assert checkpoints.describe({**hiera, "no_obj_embed_spatial": torch.empty(1, 64)}) == "SAM 2.1 hiera_tiny"
    assert checkpoints.describe({"fc.weight": torch.empty(2)}).startswith("not a SAM checkpoint")


def test_device_rules():
    assert registry.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no usable CUDA"):
            registry.resolve_device("cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            registry.resolve_device("cuda:1")
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            assert registry.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        registry.resolve_device("tpu")
