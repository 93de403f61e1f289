"""The embedded SAM 2 model shipped inside the package (no download).

``embedded.pt`` holds ``{"model": state_dict (float16), "config": {...}, "meta": {...}}``;
:func:`embedded_config` is its architecture (a reduced SAM 2.1: 256 px input, a 5-block
Hiera of width 32, ``d_model`` 128). Trained by ``scripts/train_embedded.py``; see
``docs/embedded_model.md``.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_FILE = Path(__file__).with_name("embedded.pt")


def embedded_config():
    """The :class:`~napari_sam.models.sam2.Sam2Config` of the embedded model."""
    from ..models.sam2 import reduced_config

    return reduced_config("2.1", 256, name="embedded", d_model=128, memory_attention_ffn_dim=512)


def load_embedded(path=None):
    """Build the embedded model and load its weights (float32, eval mode, CPU)."""
    import torch

    from ..models.sam2 import build_sam2

    blob = torch.load(Path(path or WEIGHTS_FILE), map_location="cpu", weights_only=True)
    model = build_sam2(embedded_config())
    model.load_state_dict({k: v.float() for k, v in blob["model"].items()}, strict=True)
    model.name = "embedded"
    return model.eval()
