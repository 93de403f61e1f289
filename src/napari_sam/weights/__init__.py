"""The embedded SAM 2 model shipped inside the package (no download).

``embedded.pt`` holds ``{"model": state_dict (float16), "config": {...}, "meta": {...}}``;
:func:`embedded_config` is its architecture (a reduced SAM 2.1: 256 px input, a 5-block
Hiera of width 32, ``d_model`` 128). Trained by ``scripts/train_embedded.py``; see
``docs/embedded_model.md``.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_FILE = Path(__file__).with_name("embedded.pt")
#: Whether the shipped weights track (VideoSession propagation good enough to offer; a model
#: with ``can_track`` False is used slice by slice by the widget, like SAM 1). These do:
#: held-out propagation figures in docs/embedded_model.md, asserted by
#: tests/test_embedded_quality.py.
EMBEDDED_TRACKS = True
#: Segment-everything defaults for these weights (``AutomaticParams.for_model``): the 64 x 64
#: logits of a 256 px model give softer mask edges than the official models, so fewer masks
#: pass the microscopy defaults (stability 0.9 / IoU 0.75 found 32 of the nuclei sample's 40);
#: 0.85 / 0.8 find 38 of 40 (mean IoU 0.84; 45 labels) and all 16 of the time-lapse's (18 labels).
EMBEDDED_AUTO_DEFAULTS = {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.85}
#: SHA-256 and size of the shipped ``embedded.pt`` (checked on every load; written by
#: ``scripts/ship_embedded.py``).
WEIGHTS_SHA256 = "0612f775f2670508796c7e559e96e65f048a217907954a128043d99512059351"
WEIGHTS_SIZE = 7_983_521


def embedded_config():
    """The :class:`~napari_sam.models.sam2.Sam2Config` of the embedded model."""
    from ..models.sam2 import reduced_config

    return reduced_config("2.1", 256, name="embedded", d_model=128, memory_attention_ffn_dim=512)


def build_embedded():
    """The embedded architecture, randomly initialised, in eval mode, with what the engine and
    the widget read from it: ``name``, ``can_track`` and ``auto_defaults``."""
    from ..models.sam2 import build_sam2

    model = build_sam2(embedded_config())
    model.name = "embedded"
    model.can_track = EMBEDDED_TRACKS
    model.auto_defaults = dict(EMBEDDED_AUTO_DEFAULTS)
    return model.eval()


def load_embedded(path=None):
    """Build the embedded model and load its weights (float32, eval mode, CPU).

    ``path``: the shipped file by default, or a training script's ``weights.pt``; read and
    checked as any checkpoint (:mod:`napari_sam.checkpoints`: tensors only, strict keys,
    float16 converted to float32, integer tensors refused).
    """
    from .. import checkpoints

    path = Path(path or WEIGHTS_FILE)
    model = build_embedded()
    checkpoints.load_into(model, checkpoints.read_state_dict(path), "embedded", str(path))
    return model
