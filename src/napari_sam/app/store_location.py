"""Where embedding stores live: one rule for the widget and the command line.

A store of a stack for a model sits at ``<root>/<model key>/<data digest>.zarr``: ``root`` is
``<napari-sam cache>/embeddings`` (``$NAPARI_SAM_CACHE`` moves it), the model key is the
model's name and a hash of its weights, the digest a hash of the data's signature (shape,
dtype, sampled pixels; see :func:`napari_sam.engine.frames.data_signature`). The same data
with the same model gives the same folder whoever asks — the widget reading a layer, the
command line reading the file (``--embeddings-cache``) — so one's store serves the other.

Tiling is part of the key: a tiled store sits at ``<digest>-tile<H>x<W>-halo<h>x<w>.zarr``
(the tiling as resolved for the data and the model, so ``"auto"`` and the sizes it picks find
the same folder; an ``"auto"`` that picks no tiles is the untiled folder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def embeddings_root() -> Path:
    """Where stores are kept by default: ``<napari-sam cache>/embeddings``."""
    from napari_sam.registry import cache_dir

    return Path(cache_dir()) / "embeddings"


def model_key(model) -> str:
    """``<model name>-<16 hex digits of its weights hash>``: one folder per set of weights."""
    from napari_sam.engine.store.embedding_store import weights_hash

    name = str(getattr(model, "name", None) or getattr(model, "family", "model"))
    return f"{name}-{weights_hash(model)[:16]}"


def tiling_tag(grid) -> str:
    """The part of a store's folder name that names its tiling ("" for none)."""
    if grid is None:
        return ""
    (th, tw), (hh, hw) = grid.tile_shape, grid.halo
    return f"-tile{th}x{tw}-halo{hh}x{hw}"


def store_path(root, model_tag: str, frames, grid=None) -> Path:
    """``root/<model_tag>/<data signature digest>[<tiling>].zarr``: same data + same model +
    same tiling (a :class:`~napari_sam.engine.image.tiling.TileGrid` or None) -> same folder."""
    from napari_sam.engine.frames import data_signature

    sig = json.dumps(data_signature(frames), sort_keys=True, default=str)
    digest = hashlib.blake2b(sig.encode(), digest_size=12).hexdigest()
    return Path(root) / model_tag / f"{digest}{tiling_tag(grid)}.zarr"


class StoreLocator:
    """The stores of one ``model`` under ``root`` (default :func:`embeddings_root`); the model
    key (a pass over the weights) is computed once, on first use."""

    def __init__(self, model, root=None):
        self.model = model
        self.root = embeddings_root() if root is None else Path(root)
        self._key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = model_key(self.model)
        return self._key

    def grid(self, frames, tile_shape=None, halo=None):
        """The tiling ``tile_shape`` / ``halo`` give for ``frames`` and this model (None: none)."""
        from napari_sam.engine.frames import as_frame_stack
        from napari_sam.engine.image.tiling import resolve_tiling

        shape = as_frame_stack(frames).frame_shape
        return resolve_tiling(tile_shape, halo, shape, int(self.model.image_size))

    def path(self, frames, tile_shape=None, halo=None) -> Path:
        """The folder of the store of ``frames`` with that tiling (it may not exist yet)."""
        return store_path(self.root, self.key, frames, self.grid(frames, tile_shape, halo))

    def open(self, frames, contrast_limits=None, tile_shape=None, halo=None):
        """The :class:`~napari_sam.engine.store.embedding_store.EmbeddingStore` of ``frames``
        with that tiling, opened (its recorded contrast limits reused when ``contrast_limits``
        is None) or created with its parent folders."""
        from napari_sam.engine.store.embedding_store import EmbeddingStore

        grid = self.grid(frames, tile_shape, halo)
        path = store_path(self.root, self.key, frames, grid)
        path.parent.mkdir(parents=True, exist_ok=True)
        if grid is None:
            return EmbeddingStore(path, self.model, frames, contrast_limits=contrast_limits)
        return EmbeddingStore(path, self.model, frames, contrast_limits=contrast_limits,
                              tile_shape=grid.tile_shape, halo=grid.halo)
