"""EdgeTAM parity against the official EdgeTAM code, random weights, fp32 CPU.

The reference is the official ``edgetam-dimos`` 1.0.1 package. It installs under the module
name ``sam2`` — the same name as the SAM 2 reference the other tests use — so it is installed
apart, ``pip install --no-deps --target .edgetam_ref edgetam-dimos==1.0.1``, and imported
only inside :func:`official_sam2_modules`, which swaps ``sys.modules['sam2*']`` for the
duration of the build and restores the installed ``sam2`` afterwards. Its package
``__init__`` (a global hydra initialisation) is not run: the model is built from its own
``edgetam.yaml`` with ``hydra.utils.instantiate``. Its RepViT trunk is
``timm.create_model(..., pretrained=True)``, which downloads: the reference is built with
``pretrained=False``. The reference needs timm (not a dependency of ours).

Weights: the official model's state dict, perturbed so every tensor matters (BN running
statistics included), loaded into ours with ``strict=True``. Tolerance: max|ours - ref| <=
1e-4 max|ref|, for the plain and for the fused (BN folded, re-parameterised) trunk.

The official spatial perceiver's ``forward_2d`` calls ``.view`` on an expanded tensor, which
fails for 2 or more objects; the reference is therefore run one object at a time (the
objects are independent there) and compared with ours run on all objects at once.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import max_rel_err, perturb_

from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder, SpatialPerceiver
from napari_sam.models.sam2 import SAM2_CONFIGS, Sam2
from napari_sam.models.sam2.positions import sine_grid

REF_ROOT = Path(__file__).resolve().parents[2] / ".edgetam_ref"
TOL = 1e-4
SIZE = 512  # the encoder is resolution-agnostic; 512 px keeps the test at a few seconds


@contextlib.contextmanager
def official_sam2_modules():
    """Make ``import sam2`` resolve to the EdgeTAM reference inside the block only."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "sam2" or k.startswith("sam2.")}
    pkg = types.ModuleType("sam2")
    pkg.__path__ = [str(REF_ROOT / "sam2")]
    sys.modules["sam2"] = pkg
    try:
        yield pkg
    finally:
        for k in [k for k in sys.modules if k == "sam2" or k.startswith("sam2.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def build_official_edgetam() -> torch.nn.Module:
    """The official ``SAM2Base`` of ``edgetam.yaml``, timm trunk without downloaded weights."""
    if not (REF_ROOT / "sam2" / "edgetam.yaml").is_file():
        pytest.skip(f"the official EdgeTAM reference is not installed in {REF_ROOT} "
                    "(pip install --no-deps --target .edgetam_ref edgetam-dimos==1.0.1)")
    try:
        import timm  # noqa: F401  (the official trunk is a timm model)
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except Exception as err:  # noqa: BLE001 - any import failure means: no reference here
        pytest.skip(f"the official EdgeTAM reference needs timm, hydra-core and omegaconf ({err!r})")
    with official_sam2_modules():
        try:
            import sam2.modeling.backbones.timm as timm_backbone
        except Exception as err:  # noqa: BLE001
            pytest.skip(f"the official EdgeTAM code cannot be imported from {REF_ROOT} ({err!r})")
        create = timm_backbone.create_model
        timm_backbone.create_model = lambda *a, **k: create(*a, **{**k, "pretrained": False})
        cfg = OmegaConf.load(REF_ROOT / "sam2" / "edgetam.yaml")
        model = instantiate(cfg.model, _recursive_=True)
    return model.eval()


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return perturb_(build_official_edgetam(), seed=1)


def _sub(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_official_sam2_module_is_restored(official):
    """Building the reference leaves the installed ``sam2`` (SAM 2 reference) in place."""
    mod = sys.modules.get("sam2")
    assert mod is None or str(REF_ROOT) not in str(getattr(mod, "__file__", None) or mod.__path__)
    assert not any(str(REF_ROOT) in str(getattr(m, "__file__", "") or "")
                   for k, m in sys.modules.items() if k.startswith("sam2"))


def test_edgetam_image_encoder_parity(official):
    ours = EdgeTamImageEncoder(EDGETAM_CONFIG).eval()
    ours.load_state_dict(_sub(official.state_dict(), "image_encoder."), strict=True)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = official.image_encoder(x)
        trunk_ref = official.image_encoder.trunk(x)
        trunk_ours = ours.trunk(x)
        levels = ours(x)
    for t_ours, t_ref in zip(trunk_ours, trunk_ref, strict=True):
        assert max_rel_err(t_ours, t_ref) <= TOL
    assert [tuple(t.shape) for t in levels] == [(1, 256, SIZE // s, SIZE // s) for s in (4, 8, 16)]
    for lv_ours, lv_ref in zip(levels, ref["backbone_fpn"], strict=True):
        assert max_rel_err(lv_ours, lv_ref) <= TOL
    assert max_rel_err(levels[-1], ref["vision_features"]) <= TOL
    for lv, pos_ref in zip(levels, ref["vision_pos_enc"], strict=True):
        pos = sine_grid(256, lv.shape[-2], lv.shape[-1]).expand_as(pos_ref)
        assert max_rel_err(pos, pos_ref) <= TOL
    # the fused (re-parameterised) trunk computes the same features
    with torch.no_grad():
        fused = ours.fuse_()(x)
    assert ours.fused and set(ours.state_dict()) == set(_sub(official.state_dict(), "image_encoder."))
    for lv_ours, lv_ref in zip(fused, ref["backbone_fpn"], strict=True):
        assert max_rel_err(lv_ours, lv_ref) <= TOL


def _sam2_parts() -> Sam2:
    """Our SAM 2 with EdgeTAM's shapes: version 2.0 flags, 2 memory-attention layers."""
    return Sam2(SAM2_CONFIGS["sam2_hiera_tiny"].replace(memory_attention_layers=2)).eval()


def test_edgetam_state_dict_beyond_encoder_is_sam2_shaped(official):
    """Every official key outside ``image_encoder.*`` and ``spatial_perceiver.*`` loads
    strictly into our SAM 2 (2.0 flags, 2 memory layers): same names, same shapes."""
    state = {k: v for k, v in official.state_dict().items()
             if not k.startswith(("image_encoder.", "spatial_perceiver."))}
    parts = _sam2_parts()
    own = {k for k in parts.state_dict() if not k.startswith("image_encoder.")}
    assert set(state) == own
    missing, unexpected = parts.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("image_encoder.") for k in missing)


def test_edgetam_forward_image_parity(official):
    """``forward_image``: backbone_fpn levels 0/1 through the decoder's conv_s0 / conv_s1."""
    state = official.state_dict()
    encoder = EdgeTamImageEncoder(EDGETAM_CONFIG).eval()
    encoder.load_state_dict(_sub(state, "image_encoder."), strict=True)
    parts = _sam2_parts()
    parts.sam_mask_decoder.load_state_dict(_sub(state, "sam_mask_decoder."), strict=True)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = official.forward_image(x)
        levels = encoder(x)
        s0 = parts.sam_mask_decoder.conv_s0(levels[0])
        s1 = parts.sam_mask_decoder.conv_s1(levels[1])
    assert max_rel_err(s0, ref["backbone_fpn"][0]) <= TOL
    assert max_rel_err(s1, ref["backbone_fpn"][1]) <= TOL
    assert max_rel_err(levels[2], ref["vision_features"]) <= TOL


def test_edgetam_spatial_perceiver_parity(official):
    """3 objects' 64 x 64 memories -> 256 global + 256 2-D latents and their positions."""
    ours = SpatialPerceiver(EDGETAM_CONFIG).eval()
    ours.load_state_dict(_sub(official.state_dict(), "spatial_perceiver."), strict=True)
    gen = torch.Generator().manual_seed(4)
    mem = torch.randn(3, 64, 64, 64, generator=gen)
    pos = torch.randn(3, 64, 64, 64, generator=gen)
    with torch.no_grad():
        refs = [official.spatial_perceiver(mem[i:i + 1], pos[i:i + 1]) for i in range(3)]
        tokens, tok_pos = ours(mem, pos)
    ref_tokens = torch.cat([r[0] for r in refs])
    ref_pos = torch.cat([r[1] for r in refs])
    assert tokens.shape == ref_tokens.shape == (3, 512, 64)
    assert max_rel_err(tokens, ref_tokens) <= TOL
    assert max_rel_err(tokens[:, 256:], ref_tokens[:, 256:]) <= TOL  # the 2-D half on its own
    assert max_rel_err(tok_pos, ref_pos) <= TOL
    assert torch.count_nonzero(tok_pos[:, :256]) == 0


def test_edgetam_perceiver_rejects_a_memory_grid_off_the_latent_grid():
    perceiver = SpatialPerceiver(EDGETAM_CONFIG).eval()
    with pytest.raises(ValueError, match="60x60"):
        perceiver(torch.zeros(1, 64, 60, 60), torch.zeros(1, 64, 60, 60))


def test_edgetam_perceiver_objects_are_independent():
    """Runs without the reference: 5 objects at once equal each object on its own."""
    perceiver = perturb_(SpatialPerceiver(EDGETAM_CONFIG), seed=5).eval()
    gen = torch.Generator().manual_seed(6)
    mem = torch.randn(5, 64, 32, 32, generator=gen)
    pos = torch.randn(5, 64, 32, 32, generator=gen)
    with torch.no_grad():
        tokens, tok_pos = perceiver(mem, pos)
        single = [perceiver(mem[i:i + 1], pos[i:i + 1]) for i in range(5)]
    assert tokens.shape == (5, 512, 64)
    assert max_rel_err(tokens, torch.cat([s[0] for s in single])) <= TOL
    assert max_rel_err(tok_pos, torch.cat([s[1] for s in single])) <= TOL
    assert max_rel_err(tokens[0], tokens[1]) > 0.1  # different memories, different tokens
