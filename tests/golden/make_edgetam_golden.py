"""Make tests/golden/edgetam_reference.npz: the official EdgeTAM's outputs on seeded inputs.

Run once where the official reference (``.edgetam_ref``, see tests/models/test_edgetam_parity.py)
and timm (which needs torchvision; CI has neither) are installed:

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/make_edgetam_golden.py

How the inputs are made (so that the CI test rebuilds them without the reference):

* **Weights** — ``numpy_state`` of make_ais_golden.py (numpy ``default_rng``, no torch RNG:
  the same numbers on every platform and torch version) for the keys of our
  :class:`EdgeTamImageEncoder` (seed ``ENCODER_SEED``; they *are* the official
  ``image_encoder.*`` keys), of the mask decoder's ``conv_s0`` / ``conv_s1`` (``CONV_SEED``)
  and of our :class:`SpatialPerceiver` (``PERCEIVER_SEED``; the official
  ``spatial_perceiver.*`` keys). Loaded strict into the official modules. Only their SHA-256
  is stored (the trunk alone is ~20 MB of float32); the test checks the regenerated weights
  against it.
* **Image** — (1, 3, SIZE, SIZE) ``default_rng(IMAGE_SEED).standard_normal``, float32.
* **Memories** — ``N_OBJ`` objects' (64, MEM, MEM) memory and position maps,
  ``default_rng(MEMORY_SEED).standard_normal``, float32. The official ``forward_2d`` fails
  for 2 or more objects, so the reference is run one object at a time.

Stored (float32): ``forward_image``'s ``backbone_fpn`` levels (0 and 1 after conv_s0 /
conv_s1) and ``vision_features``, the perceiver's tokens and positions, and the SHA-256 of
every input.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "edgetam_reference.npz"
ENCODER_SEED, CONV_SEED, PERCEIVER_SEED, IMAGE_SEED, MEMORY_SEED = 21, 22, 23, 24, 25
SIZE, N_OBJ, MEM = 128, 3, 32


def _tests_on_path() -> None:
    tests = str(HERE.parent)
    if tests not in sys.path:
        sys.path.insert(0, tests)


def _numpy_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    _tests_on_path()
    from golden.make_ais_golden import numpy_state

    return numpy_state(module, seed)


class HighResConvs(torch.nn.Module):
    """The mask decoder's ``conv_s0`` / ``conv_s1`` (256 -> 32 / 64, 1x1) that ``forward_image``
    applies to FPN levels 0 / 1; the same key names as ``sam_mask_decoder.conv_s*``."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.conv_s0 = torch.nn.Conv2d(dim, dim // 8, 1)
        self.conv_s1 = torch.nn.Conv2d(dim, dim // 4, 1)


@functools.lru_cache(maxsize=1)
def encoder_state() -> dict[str, torch.Tensor]:
    """Cached (~5 M numbers): read it, do not modify it in place."""
    from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder

    with torch.device("meta"):
        shapes = EdgeTamImageEncoder(EDGETAM_CONFIG)
    return _numpy_state(shapes, ENCODER_SEED)


def conv_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = HighResConvs()
    return _numpy_state(shapes, CONV_SEED)


def perceiver_state() -> dict[str, torch.Tensor]:
    from napari_sam.models.edgetam import EDGETAM_CONFIG, SpatialPerceiver

    with torch.device("meta"):
        shapes = SpatialPerceiver(EDGETAM_CONFIG)
    return _numpy_state(shapes, PERCEIVER_SEED)


def image() -> torch.Tensor:
    a = np.random.default_rng(IMAGE_SEED).standard_normal((1, 3, SIZE, SIZE))
    return torch.from_numpy(a.astype(np.float32))


def memories() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(MEMORY_SEED)
    mem = rng.standard_normal((N_OBJ, 64, MEM, MEM)).astype(np.float32)
    pos = rng.standard_normal((N_OBJ, 64, MEM, MEM)).astype(np.float32)
    return torch.from_numpy(mem), torch.from_numpy(pos)


def digest(tensors) -> str:
    """SHA-256 over names, shapes, dtypes and bytes: a dict in sorted key order, or a sequence."""
    h = hashlib.sha256()
    items = sorted(tensors.items()) if isinstance(tensors, dict) else enumerate(tensors)
    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def input_digests() -> dict[str, str]:
    return {"sha_encoder": digest(encoder_state()), "sha_convs": digest(conv_state()),
            "sha_perceiver": digest(perceiver_state()), "sha_image": digest([image()]),
            "sha_memories": digest(memories())}


def main() -> None:
    _tests_on_path()
    from models.test_edgetam_parity import REF_ROOT, build_official_edgetam

    torch.set_num_threads(1)
    official = build_official_edgetam()
    official.image_encoder.load_state_dict(encoder_state(), strict=True)
    decoder_keys = set(official.sam_mask_decoder.state_dict())
    missing, unexpected = official.sam_mask_decoder.load_state_dict(conv_state(), strict=False)
    assert not unexpected and set(missing) == decoder_keys - set(conv_state()), (missing, unexpected)
    official.spatial_perceiver.load_state_dict(perceiver_state(), strict=True)
    official.eval()
    mem, pos = memories()
    out = {k: np.array(v) for k, v in input_digests().items()}
    out["reference"] = np.array(next(REF_ROOT.glob("edgetam_dimos-*.dist-info")).name)
    with torch.no_grad():
        ref = official.forward_image(image())
        assert torch.equal(ref["backbone_fpn"][2], ref["vision_features"])  # stored once
        for i in (0, 1):
            out[f"backbone_fpn_{i}"] = ref["backbone_fpn"][i].numpy()
        out["vision_features"] = ref["vision_features"].numpy()
        refs = [official.spatial_perceiver(mem[i:i + 1], pos[i:i + 1]) for i in range(N_OBJ)]
    out["perceiver_tokens"] = torch.cat([r[0] for r in refs]).numpy()
    out["perceiver_pos"] = torch.cat([r[1] for r in refs]).numpy()
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB):",
          {k: (v.shape, v.dtype.name) for k, v in out.items()})


if __name__ == "__main__":
    main()
