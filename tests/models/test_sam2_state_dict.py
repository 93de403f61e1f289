"""SAM 2 / 2.1 state_dict keys and shapes equal the official checkpoints (meta device)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2

REF = Path("/work/shared/reference/state_dicts")
FILES = {
    "sam2_hiera_tiny": "sam2_t.txt", "sam2_hiera_small": "sam2_s.txt",
    "sam2_hiera_base_plus": "sam2_b+.txt", "sam2_hiera_large": "sam2_l.txt",
    "sam2.1_hiera_tiny": "sam2.1_t.txt", "sam2.1_hiera_small": "sam2.1_s.txt",
    "sam2.1_hiera_base_plus": "sam2.1_b+.txt", "sam2.1_hiera_large": "sam2.1_l.txt",
}


def _reference(name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (REF / FILES[name]).read_text().splitlines():
        if not line.strip():
            continue
        key, shape, _ = line.split("\t")
        out[key] = tuple(int(d) for d in re.findall(r"\d+", shape))
    return out


@pytest.mark.skipif(not REF.is_dir(), reason="reference state_dict listings not present")
@pytest.mark.parametrize("name", sorted(FILES))
def test_state_dict_matches_official(name):
    with torch.device("meta"):
        model = build_sam2(SAM2_CONFIGS[name])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = _reference(name)
    assert sorted(set(ref) - set(ours)) == []  # missing
    assert sorted(set(ours) - set(ref)) == []  # unexpected
    assert {k: v for k, v in ours.items() if ref[k] != v} == {}


def test_versions_differ_exactly_in_the_21_additions():
    with torch.device("meta"):
        keys20 = set(build_sam2("sam2_hiera_tiny").state_dict())
        keys21 = set(build_sam2("sam2.1_hiera_tiny").state_dict())
    assert keys20 <= keys21
    assert keys21 - keys20 == {"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias"}
