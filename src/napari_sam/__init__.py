"""napari-sam: Segment Anything (SAM 1 and SAM 2) for microscopy, in napari and in Python.

Public API (see DESIGN.md): ``list_models``, ``load_model``, ``ImagePredictor``,
``EmbeddingStore``, ``VideoSession``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "AutoTracker",
    "AutomaticSegmenter",
    "EmbeddingStore",
    "ImagePredictor",
    "VideoSession",
    "list_models",
    "load_model",
]

_LAZY = {
    "list_models": ("registry", "list_models"),
    "load_model": ("registry", "load_model"),
    "ImagePredictor": ("engine.image.predictor", "ImagePredictor"),
    "EmbeddingStore": ("engine.store.embedding_store", "EmbeddingStore"),
    "VideoSession": ("engine.video.session", "VideoSession"),
    "AutomaticSegmenter": ("engine.auto.segmenter", "AutomaticSegmenter"),
    "AutoTracker": ("engine.auto.tracking", "AutoTracker"),
}


def __getattr__(name: str):
    # Lazy: importing napari_sam (napari does, to read the manifest) must not import torch.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
