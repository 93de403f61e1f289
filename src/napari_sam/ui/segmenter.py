"""The engine behind one image layer and one model: an application-layer session
(:class:`napari_sam.app.session.StackSession`: embedding stores found by the shared
store-location rule, prompt -> best mask, propagation, automatic runs) over the layer's
stacks as :class:`~.geometry.StackGeometry` reads them. No Qt, no napari events; its methods
run in worker threads (``lock`` serialises every engine call).
"""

from __future__ import annotations

from pathlib import Path

from napari_sam.app.session import StackSession, no_tracking

from .geometry import StackGeometry

__all__ = ["Segmenter", "no_tracking"]


class Segmenter(StackSession):
    """A :class:`StackSession` for ``image_layer`` (read through ``geometry``) and ``model``."""

    def __init__(self, model, image_layer, geometry: StackGeometry, cache_root: Path | None = None):
        super().__init__(model, {key: geometry.frames(image_layer, key) for key in geometry.stack_keys()}, cache_root=cache_root)
        self.image_layer = image_layer
        self.geometry = geometry
