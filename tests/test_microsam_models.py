"""micro-sam's models: registry facts (names, URLs, xxh128, decoders), xxh128-checked downloads,
torch_em's file format, and the messages for files given under the wrong name.

Random weights only (vit_t: 6 M parameters, a 40 MB file); no download leaves this machine
(a local HTTP server stands in for micro-sam's hosts).
"""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import replace

import pytest
import torch

import napari_sam as ns
from napari_sam import checkpoints, registry
from napari_sam.checkpoints import CheckpointError

xxhash = pytest.importorskip("xxhash", reason="micro-sam's digests are xxh128 (pip install xxhash)")

MICROSAM = ("vit_t", "vit_b_lm", "vit_l_lm", "vit_t_lm", "vit_b_em_organelles", "vit_l_em_organelles",
            "vit_t_em_organelles", "vit_b_histopathology", "vit_l_histopathology", "vit_h_histopathology",
            "vit_b_medical_imaging")


def test_microsam_names_are_listed_as_sam1_with_hashes_and_decoders():
    models = {m.name: m for m in ns.list_models()}
    assert set(MICROSAM) <= set(models)
    for name in MICROSAM:
        m = models[name]
        assert m.family == "sam1" and m.source == "micro-sam" and m.variant == name[:5]
        assert m.sha256 == "" and len(m.xxh128) == 32 and m.known_hash == f"xxh128:{m.xxh128}"
        assert m.size is not None and not m.size_exact and m.size_text.startswith("about ")
        assert m.has_decoder == (name != "vit_t") and (m.decoder_xxh128 != "") == m.has_decoder
        assert m.filename == f"{name}.pt" and (not m.has_decoder or m.decoder_filename == f"{name}_decoder.pt")
    b = models["vit_b_lm"]
    assert b.url == "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/diplomatic-bug/1.2/files/vit_b.pt"
    assert b.decoder_url.endswith("/diplomatic-bug/1.2/files/vit_b_decoder.pt")
    assert b.xxh128 == "fe9252a29f3f4ea53c15a06de471e186"
    assert models["vit_t"].size_text == "about 39 MiB"
    # micro-sam's names of Meta's own files are the official entries
    assert registry.model_info("vit_b") is not None and registry.model_info("vit_h").name == "sam_vit_h"


def test_registry_equals_microsam_1_8_14():
    """Every URL and digest as micro-sam itself has them (when micro-sam is installed)."""
    util = pytest.importorskip("micro_sam.util", reason="micro-sam (the reference) is not installed")
    theirs = util.models()
    for name in MICROSAM:
        m = registry.model_info(name)
        assert theirs.registry[name] == m.known_hash and theirs.urls[name] == m.url, name
        if m.has_decoder:
            assert theirs.registry[f"{name}_decoder"] == f"xxh128:{m.decoder_xxh128}"
            assert theirs.urls[f"{name}_decoder"] == m.decoder_url
    extra = {k for k in theirs.registry if not k.endswith("_decoder")} - set(MICROSAM) - {"vit_b", "vit_l", "vit_h"}
    assert not extra, f"micro-sam has models we do not list: {extra}"


def test_offline_microsam_model_says_where_to_get_it():
    with pytest.raises(CheckpointError, match=r"vit_b_lm is not cached and downloads are off.*diplomatic-bug"):
        ns.load_model("vit_b_lm", device="cpu")


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_SAM_OFFLINE", raising=False)
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def vit_t_sd():
    torch.manual_seed(0)
    from napari_sam.models.tinyvit import build_sam1_vit_t

    return build_sam1_vit_t().state_dict()


def _decoder_state(width: int = 256) -> dict:
    """The keys micro-sam's UNETR decoder always has (others omitted), small random tensors."""
    return {"base.block.1.weight": torch.randn(512, width, 3, 3), "out_conv.weight": torch.randn(3, 64, 1, 1),
            "decoder.blocks.0.block.1.weight": torch.randn(256, 512, 3, 3)}


def test_download_checks_xxh128_of_model_and_decoder(http_dir, tmp_path, vit_t_sd):
    root, base = http_dir
    torch.save(vit_t_sd, root / "vit_t.pt")
    torch.save(_decoder_state(), root / "vit_t_decoder.pt")
    info = replace(registry.model_info("vit_t_lm"), url=base + "vit_t.pt", decoder_url=base + "vit_t_decoder.pt",
                   xxh128=checkpoints.hash_of(root / "vit_t.pt", "xxh128"),
                   decoder_xxh128=checkpoints.hash_of(root / "vit_t_decoder.pt", "xxh128"))
    assert checkpoints.fetch(info) == info.path and checkpoints.verify(info)
    assert checkpoints.fetch_decoder(info) == info.decoder_path
    assert (root / "vit_t_decoder.pt").read_bytes() == info.decoder_path.read_bytes()
    info.decoder_path.unlink()
    bad = replace(info, decoder_xxh128="0" * 32)
    with pytest.raises(CheckpointError, match="xxh128 mismatch") as err:
        checkpoints.fetch_decoder(bad)
    assert bad.decoder_url in str(err.value) and not bad.decoder_path.exists()


def test_torch_em_format_loads_with_prefix_stripped_and_decoder_kept(tmp_path, vit_t_sd):
    path = tmp_path / "vit_t_lm_torch_em.pt"
    decoder = _decoder_state()
    torch.save({"model_state": {f"sam.{k}": v for k, v in vit_t_sd.items()}, "decoder_state": decoder,
                "iteration": 100, "best_metric": 0.25, "timestamp": "01-01-2025 (10:00:00)"}, path)
    model = ns.load_model("vit_t_lm", checkpoint=path, device="cpu")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in vit_t_sd.items())
    assert set(model.ais_decoder_state) == set(decoder)
    assert torch.equal(model.ais_decoder_state["out_conv.weight"], decoder["out_conv.weight"])
    flat = tmp_path / "vit_t.pt"
    torch.save(vit_t_sd, flat)
    assert ns.load_model("vit_t", checkpoint=flat, device="cpu").ais_decoder_state is None


def test_decoder_file_alone_says_so(tmp_path):
    path = tmp_path / "vit_b_decoder.pt"
    torch.save(_decoder_state(), path)
    with pytest.raises(CheckpointError, match=r"decoder alone.*Pass the model file"):
        ns.load_model("vit_b_lm", checkpoint=path, device="cpu")


def test_decoder_of_another_width_is_refused(tmp_path, vit_t_sd):
    path = tmp_path / "mixed.pt"
    torch.save({"model_state": vit_t_sd, "decoder_state": _decoder_state(width=768)}, path)
    with pytest.raises(CheckpointError, match=r"decoder reads 768-channel image embeddings.*'vit_t_lm' gives 256"):
        ns.load_model("vit_t_lm", checkpoint=path, device="cpu")


def test_microsam_file_under_an_official_name_names_the_right_one(tmp_path, vit_t_sd):
    torch_em = tmp_path / "vit_t_lm.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in vit_t_sd.items()}}, torch_em)
    with pytest.raises(CheckpointError, match=r"micro-sam \(torch_em\) checkpoint of MobileSAM vit_t.*'vit_t_lm'"):
        ns.load_model("sam_vit_b", checkpoint=torch_em, device="cpu")
    flat = tmp_path / "mobile_sam.pt"
    torch.save(vit_t_sd, flat)
    with pytest.raises(CheckpointError, match=r"looks like MobileSAM vit_t.*load_model\('vit_t'"):
        ns.load_model("sam_vit_b", checkpoint=flat, device="cpu")


def test_published_microsam_file_under_an_official_name_is_recognised_by_its_hash(tmp_path, monkeypatch, vit_t_sd):
    """A flat micro-sam file looks like any SAM file: its xxh128 tells which one it is."""
    path = tmp_path / "vit_b.pt"
    torch.save(vit_t_sd, path)
    digest = checkpoints.hash_of(path, "xxh128")
    fake = tuple(replace(m, xxh128=digest) if m.name == "vit_b_lm" else m for m in registry._MICROSAM)
    monkeypatch.setattr(registry, "_MICROSAM", fake)
    with pytest.raises(CheckpointError, match=r"is micro-sam's 'vit_b_lm' file \(its xxh128 matches\)"):
        ns.load_model("sam_vit_b", checkpoint=path, device="cpu")


def test_encoder_of_another_size_than_the_name_says_which(tmp_path, vit_t_sd):
    path = tmp_path / "vit_t_em.pt"
    torch.save({"model_state": vit_t_sd}, path)
    with pytest.raises(CheckpointError, match=r"does not fit model 'vit_b_em_organelles': it looks like MobileSAM vit_t"):
        ns.load_model("vit_b_em_organelles", checkpoint=path, device="cpu")
