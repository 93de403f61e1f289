"""load_model on official-format files (random weights): strict loads, clear mismatch messages."""

from __future__ import annotations

import pytest
import torch

import napari_sam as ns
from napari_sam.checkpoints import CheckpointError
from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory):
    """A SAM 1 vit_b checkpoint in the official format (flat state_dict), official builder."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sd = sam_model_registry["vit_b"]().state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_random.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def sam21_tiny_file(tmp_path_factory):
    """A SAM 2.1 tiny checkpoint in the official format ({"model": state_dict})."""
    torch.manual_seed(1)
    sd = build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"]).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": sd}, path)
    return path, sd


def test_official_sam1_file_loads_strictly(vit_b_file):
    path, sd = vit_b_file
    model = ns.load_model("sam_vit_b", checkpoint=path, device="cpu")
    assert model.family == "sam1" and model.name == "sam_vit_b" and not model.training
    got = model.state_dict()
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_sam2_file_loads_strictly(sam21_tiny_file):
    path, sd = sam21_tiny_file
    model = ns.load_model("sam2.1_hiera_tiny", checkpoint=str(path), device="cpu")
    assert model.family == "sam2"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


def test_sam21_file_as_sam20_model_says_so(sam21_tiny_file):
    path, _ = sam21_tiny_file
    with pytest.raises(CheckpointError) as err:
        ns.load_model("sam2_hiera_tiny", checkpoint=path, device="cpu")
    msg = str(err.value)
    assert "looks like SAM 2.1 hiera_tiny" in msg and "load_model('sam2.1_hiera_tiny'" in msg
    assert "no_obj_embed_spatial" in msg or "obj_ptr_tpos_proj" in msg
    assert len(msg) < 800  # a sentence, not a key dump


def test_sam20_file_as_sam21_model_says_so(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "sam2_hiera_small.pt"
    torch.save({"model": build_sam2(SAM2_CONFIGS["sam2_hiera_small"]).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"looks like SAM 2\.0 hiera_small.*load_model\('sam2_hiera_small'"):
        ns.load_model("sam2.1_hiera_small", checkpoint=path, device="cpu")


def test_other_family_says_what_it_is(vit_b_file, sam21_tiny_file):
    with pytest.raises(CheckpointError, match=r"looks like SAM 1 vit_b .*load_model\('sam_vit_b'") as err:
        ns.load_model("sam_vit_l", checkpoint=vit_b_file[0], device="cpu")
    assert len(str(err.value)) < 800
    with pytest.raises(CheckpointError, match="looks like SAM 2.1 hiera_tiny"):
        ns.load_model("sam_vit_b", checkpoint=sam21_tiny_file[0], device="cpu")


def test_not_a_sam_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        ns.load_model("sam_vit_b", checkpoint=path, device="cpu")
