"""Our SAM 1 presets have exactly the official checkpoint keys and shapes (built on meta).

Checked against the key/shape listings in ``shared/reference/state_dicts`` (when present)
and against the official ``sam_model_registry`` builders (built on the meta device too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_sam.models.sam1 import SAM1_PRESETS, Sam1Config, build_sam1

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "state_dicts"


def reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    path = REFERENCE / f"sam1_{name}.txt"
    if not path.exists():
        pytest.skip(f"{path} not available")
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape, _dtype = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


def our_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_sam1(name)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_preset_state_dict_equals_reference_listing(name):
    ours, ref = our_shapes(name), reference_shapes(name)
    assert sorted(ours) == sorted(ref)
    assert ours == ref


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_preset_state_dict_equals_official_builder(name):
    registry = pytest.importorskip("segment_anything").sam_model_registry
    with torch.device("meta"):
        official = registry[name]()
    ref = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    ours = our_shapes(name)
    assert list(ours) == list(ref)
    assert ours == ref


def test_presets():
    assert set(SAM1_PRESETS) == {"vit_b", "vit_l", "vit_h"}
    cfg = Sam1Config.preset("sam_vit_h")
    assert (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.encoder_num_heads) == (1280, 32, 16)
    assert cfg.encoder_global_attn_indexes == (7, 15, 23, 31)
    assert Sam1Config.preset("vit_l", encoder_depth=2).encoder_depth == 2
    assert cfg.embedding_size == 64
    with pytest.raises(KeyError):
        Sam1Config.preset("vit_x")
