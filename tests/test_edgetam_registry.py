"""EdgeTAM in the registry (issue #15): its published facts, loading official-format files,
and files of the other SAM 2 family named back to the right model.

The recogniser needs key names only, so the EdgeTAM files of the refusal tests hold the real
``image_encoder.*`` and ``spatial_perceiver.*`` tensors of our EdgeTAM modules (official key
names, parity-tested in tests/models/test_edgetam_parity.py) — a few MB, no full model. The
end-to-end loads build the whole model (``napari_sam.models.edgetam.build_edgetam``) and skip
where it is not there yet.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from dataclasses import replace

import pytest
import torch

import napari_sam as ns
from napari_sam import checkpoints, cli, registry
from napari_sam.checkpoints import CheckpointError
from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder, SpatialPerceiver
from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2

#: Meta's Git LFS record of checkpoints/edgetam.pt (huggingface.co/spaces/facebook/EdgeTAM,
#: "SHA256 ... Size of remote file: 56.1 MB"); the exact byte count as measured by others.
EDGETAM_SHA256 = "ed2d4850b8792c239689b043c47046ec239b6e808a3d9b6ae676c803fd8780df"
EDGETAM_BYTES = 56_116_523
EDGETAM_SAYS = "this file is an EdgeTAM checkpoint (RepViT trunk, spatial perceiver); load it as 'edgetam'"

DOCS = Path(__file__).resolve().parents[1] / "docs"
has_builder = importlib.util.find_spec("napari_sam.models.edgetam.build") is not None
needs_builder = pytest.mark.skipif(not has_builder, reason="models/edgetam/build.py (build_edgetam) is not there yet")


@pytest.fixture(scope="module")
def edgetam_parts(tmp_path_factory):
    """{"model": sd} of EdgeTAM's own parts (image encoder, spatial perceiver) with official names."""
    torch.manual_seed(0)
    sd = {f"image_encoder.{k}": v for k, v in EdgeTamImageEncoder(EDGETAM_CONFIG).state_dict().items()}
    sd |= {f"spatial_perceiver.{k}": v for k, v in SpatialPerceiver(EDGETAM_CONFIG).state_dict().items()}
    path = tmp_path_factory.mktemp("edgetam") / "edgetam_parts.pt"
    torch.save({"model": sd}, path)
    return path


@pytest.fixture(scope="module")
def sam21_tiny_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"]).state_dict()}, path)
    return path


def test_edgetam_is_listed_with_its_published_facts():
    models = {m.name: m for m in ns.list_models()}
    m = models["edgetam"]
    assert m.family == "sam2" and m.variant == "edgetam" and m.source == "official"
    assert m.url == "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt"
    assert m.sha256 == EDGETAM_SHA256 and m.known_hash == f"sha256:{EDGETAM_SHA256}"
    assert m.size == EDGETAM_BYTES and m.size_exact and m.size_text == "54 MiB"
    assert m.filename == "edgetam.pt" and m.path == registry.cache_dir() / "edgetam.pt"
    assert not m.cached and m.cache_state == "missing"
    names = [x.name for x in ns.list_models()]
    assert names.index("sam2.1_hiera_large") < names.index("edgetam") < names.index("vit_t")


def test_describe_recognises_edgetam(edgetam_parts):
    sd = checkpoints.read_state_dict(edgetam_parts)
    assert checkpoints.describe(sd) == "EdgeTAM (RepViT trunk, spatial perceiver)"
    assert checkpoints.family_of(sd) == "edgetam"
    trunk_only = {k: v for k, v in sd.items() if k.startswith("image_encoder.trunk.")}
    assert checkpoints.describe(trunk_only) == "EdgeTAM (RepViT trunk)"
    hiera = {"image_encoder.trunk.patch_embed.proj.weight": torch.empty(96, 3, 7, 7)}
    assert checkpoints.family_of(hiera) == "sam2" and checkpoints.family_of({"fc.weight": torch.empty(1)}) is None


@pytest.mark.parametrize("name", ["sam2_hiera_tiny", "sam2.1_hiera_small", "embedded", "sam_vit_b"])
def test_edgetam_file_under_another_name_says_load_it_as_edgetam(edgetam_parts, name):
    with pytest.raises(CheckpointError) as err:
        ns.load_model(name, checkpoint=edgetam_parts, device="cpu")
    msg = str(err.value)
    assert EDGETAM_SAYS in msg and str(edgetam_parts) in msg and f"model {name!r}" in msg
    assert len(msg) < 400


def test_sam2_file_as_edgetam_says_what_it_is(sam21_tiny_file, tmp_path):
    with pytest.raises(CheckpointError) as err:
        ns.load_model("edgetam", checkpoint=sam21_tiny_file, device="cpu")
    msg = str(err.value)
    assert "this file is a SAM 2.1 hiera_tiny checkpoint (Hiera trunk); load it as 'sam2.1_hiera_tiny'" in msg
    assert str(sam21_tiny_file) in msg and len(msg) < 400
    # a SAM 2.0 file, in SAM 1's flat format (not {"model": ...}): the same answer with its own name
    torch.manual_seed(2)
    flat = tmp_path / "small.pth"
    torch.save(build_sam2(SAM2_CONFIGS["sam2_hiera_small"]).state_dict(), flat)
    says = r"a SAM 2\.0 hiera_small checkpoint \(Hiera trunk\); load it as 'sam2_hiera_small'"
    with pytest.raises(CheckpointError, match=says):
        ns.load_model("edgetam", checkpoint=flat, device="cpu")


def test_sam1_and_foreign_files_as_edgetam(tmp_path):
    vit = {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
           **{f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}}
    path = tmp_path / "vit_b.pth"
    torch.save(vit, path)
    with pytest.raises(CheckpointError, match=r"this file is a SAM 1 vit_b .*checkpoint; load it as 'sam_vit_b'"):
        ns.load_model("edgetam", checkpoint=path, device="cpu")
    other = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        ns.load_model("edgetam", checkpoint=other, device="cpu")


def test_cached_edgetam_file_of_another_hash_is_kept_and_named():
    """Offline, a file at the cache path that is not Meta's (here: a foreign file of the right
    size) is refused on load with its path named, and left where it is."""
    info = registry.model_info("edgetam")
    info.path.parent.mkdir(parents=True, exist_ok=True)
    with open(info.path, "wb") as f:
        f.truncate(EDGETAM_BYTES)
    assert info.cached  # by its size, cheaply ...
    with pytest.raises(CheckpointError) as err:  # ... and its SHA-256 is checked on every load
        ns.load_model("edgetam", device="cpu")
    msg = str(err.value)
    assert f"{info.path} is not the official edgetam file" in msg and EDGETAM_SHA256[:12] in msg
    assert info.path.stat().st_size == EDGETAM_BYTES


def test_default_model_prefers_a_cached_edgetam_without_a_gpu():
    """A CPU-only machine is offered EdgeTAM (faster there), a GPU machine SAM 2.1, when both are cached."""
    assert registry.default_model(gpu=False) == registry.default_model(gpu=True) == "embedded"
    for name in ("sam2.1_hiera_tiny", "edgetam"):
        info = registry.model_info(name)
        info.path.parent.mkdir(parents=True, exist_ok=True)
        with open(info.path, "wb") as f:  # sparse files of the official sizes: "cached"
            f.truncate(info.size)
    assert registry.default_model(gpu=False) == "edgetam"
    assert registry.default_model(gpu=True) == "sam2.1_hiera_tiny"
    assert registry.default_model() == ("sam2.1_hiera_tiny" if torch.cuda.is_available() else "edgetam")


def test_edgetam_download_is_checked_against_the_published_hash(tmp_path, monkeypatch):
    """A download that is not Meta's file (a real HTTP server serving another one) is refused and not kept."""
    import functools
    import http.server
    import threading

    monkeypatch.delenv("NAPARI_SAM_OFFLINE", raising=False)
    root = tmp_path / "srv"
    root.mkdir()
    (root / "edgetam.pt").write_bytes(b"not the EdgeTAM checkpoint")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        info = replace(registry.model_info("edgetam"), url=f"http://127.0.0.1:{server.server_address[1]}/edgetam.pt")
        with pytest.raises(CheckpointError, match="corrupt or truncated .*SHA-256 mismatch"):
            checkpoints.fetch(info)
        assert not info.path.exists()
    finally:
        server.shutdown()
        server.server_close()


def test_models_listing_shows_edgetam_with_its_size(capsys):
    assert cli.main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("edgetam "))
    assert "54 MiB" in line and "EdgeTAM" in line and line.rstrip().endswith("-")


def test_docs_say_which_model_to_pick_with_the_widget_figures():
    """docs/models.md and the user guide give the figures the widget's tooltips give."""
    for page in ("models.md", "user_guide.md"):
        text = (DOCS / page).read_text()
        assert "`edgetam`" in text and "3.4 s" in text and "54 s" in text and "0.06 s" in text, page


@pytest.fixture(scope="module")
def edgetam_full(tmp_path_factory):
    """The whole EdgeTAM at random init, saved as the official {"model": sd} and as a plain sd."""
    from napari_sam.models.edgetam.build import build_edgetam

    torch.manual_seed(3)
    sd = build_edgetam(config=EDGETAM_CONFIG).state_dict()
    d = tmp_path_factory.mktemp("edgetam_full")
    torch.save({"model": sd}, d / "edgetam_official.pt")
    torch.save(sd, d / "edgetam_plain.pt")
    return d, sd


@needs_builder
@pytest.mark.parametrize("file", ["edgetam_official.pt", "edgetam_plain.pt"])
def test_official_format_edgetam_file_loads_strictly(edgetam_full, file):
    d, sd = edgetam_full
    model = ns.load_model("edgetam", checkpoint=d / file, device="cpu")
    assert model.name == "edgetam" and model.family == "sam2" and not model.training
    got = model.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], v) for k, v in sd.items())
    # load_model keeps the official trunk (video parity); the folded one is opt-in and gives
    # the same features to float rounding
    assert not model.image_encoder.fused
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model.image_encoder(x)[-1]
        fused = model.image_encoder.fuse_()(x)[-1]
    model.image_encoder.fuse_(False)
    assert float((fused - plain).abs().max()) <= 1e-4 * float(plain.abs().max())


@needs_builder
def test_full_edgetam_file_under_a_sam2_name_says_load_it_as_edgetam(edgetam_full):
    d, _ = edgetam_full
    with pytest.raises(CheckpointError, match=EDGETAM_SAYS.replace("(", r"\(").replace(")", r"\)")):
        ns.load_model("sam2_hiera_tiny", checkpoint=d / "edgetam_official.pt", device="cpu")

