"""ImagePredictor: one 2D image (or one frame of a stack) in, masks out — SAM 1 and SAM 2.

Numbers equal the official ``SamPredictor`` / ``SAM2ImagePredictor``: the same preprocessing,
prompt transforms and mask upscaling, all from the model family's transform
(:mod:`napari_sam.engine.image.family`).

With ``tile_shape`` (and ``halo``) a large image is seen at its own resolution: each tile's
outer window is embedded on its own and each prompt is answered in the window that holds it
best (:mod:`napari_sam.engine.image.tiled`); masks still come back at the image's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...models.decoder import DecoderCache
from .family import transform_for
from .preprocess import to_uint8_rgb
from .prompts import check_box, check_mask_logits, check_points
from .tiled import FrameView, TiledImage, check_image_shape, decode_window, whole_image_limits
from .tiling import TileGrid, _pair, resolve_tiling


@dataclass
class Prediction:
    """``masks`` (K, H, W) bool at the image's size, ``scores`` (K,) predicted IoU,
    ``logits`` (K, S/4, S/4) low-res logits (feed one back as ``mask_logits``),
    ``object_scores`` (1,) SAM 2 object-presence logit of the prompt set (> 0: object visible), else None;
    ``window`` on a tiled image the (y0, y1, x0, x1) image window ``logits`` belong to, else None."""

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    object_scores: np.ndarray | None = None
    window: tuple[int, int, int, int] | None = None

    @property
    def best(self) -> np.ndarray:
        """The mask with the highest predicted IoU."""
        return self.masks[int(np.argmax(self.scores))]


class ImagePredictor:
    """Embed an image once with :meth:`set_image`, then :meth:`predict` masks for prompts.

    ``tile_shape`` / ``halo``: (h, w) in image pixels (micro-sam's meaning: a tile is its core
    plus ``halo`` on each side), ``"auto"`` (chosen from the image and the model: windows of
    the model's input size), or None (the whole image shrunk to the model's input, as always).
    An image that fits one tile is embedded whole. Bad values (a tile under 32 px, a halo over
    half the tile) are a ValueError here.
    """

    def __init__(self, model: torch.nn.Module, tile_shape=None, halo=None) -> None:
        try:
            self.transform = transform_for(model)  # every per-family rule, chosen once
        except ValueError as e:
            raise TypeError(f"ImagePredictor needs a model from napari_sam.load_model(): {e}") from None
        self.model = model.eval()
        _check_tiling(tile_shape, halo, self.image_size)
        self.tile_shape, self.halo = tile_shape, halo
        self._feats: dict[str, torch.Tensor] | None = None
        self._orig_hw: tuple[int, int] | None = None
        self._decoder_cache = DecoderCache()  # the decoder's prompt-independent work on this image
        self._tiled: TiledImage | None = None
        self.grid: TileGrid | None = None  # the current image's tiles (None: embedded whole)

    # -- image ---------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    @torch.inference_mode()
    def set_image(self, image, contrast_limits=None, progress=None) -> None:
        """Embed an (H, W) or (H, W, 3) image of any dtype (see ``to_uint8_rgb``).

        Tiled: every tile's outer window is embedded, mapped to 8 bit with the whole image's
        contrast limits; ``progress(done, total)`` after each tile. The image is kept by
        reference (windows centred on prompts are cropped from it later): do not change it
        in place while predicting on it."""
        grid = None
        if self.tile_shape is not None:
            hw = check_image_shape(np.shape(image) if not hasattr(image, "shape") else image.shape)
            grid = resolve_tiling(self.tile_shape, self.halo, hw, self.image_size)
        if grid is None or len(grid) == 1:
            rgb = to_uint8_rgb(image, contrast_limits)
            self._feats = self.transform.encode(rgb)
            self._decoder_cache.clear()
            self._orig_hw = rgb.shape[:2]
            self._tiled, self.grid = None, grid
            if progress is not None:
                progress(1, 1)
            return
        image = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
        tiled = TiledImage(self.model, self.transform, grid, image, whole_image_limits(image, contrast_limits))
        tiled.embed_tiles(progress)
        self._set_tiled(tiled)

    def _set_tiled(self, tiled: TiledImage) -> None:
        self._tiled, self.grid = tiled, tiled.grid
        self._feats = None
        self._decoder_cache.clear()
        self._orig_hw = tiled.image_shape

    def set_embedding(self, features, image_hw: tuple[int, int]) -> None:
        """Use features computed elsewhere (an EmbeddingStore frame, or :meth:`embedding`)."""
        dev = self.transform.device
        self._feats = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).to(dev)
                       for k, v in features.items()}
        self._decoder_cache.clear()
        self._orig_hw = (int(image_hw[0]), int(image_hw[1]))
        self._tiled = self.grid = None

    def set_frame(self, store, t: int) -> None:
        """Use frame ``t`` of an :class:`EmbeddingStore` (computed on demand if missing). A
        tiled store is followed with its own tiling, lazily: a tile is read (or encoded and
        stored) when a prompt needs it."""
        grid = getattr(store, "grid", None)
        if grid is None:
            self.set_embedding(store.get(t), store.frame_shape[:2])
            return
        t = store.frames._index(t)
        view = FrameView(store.frames, t)
        self._set_tiled(TiledImage(self.model, self.transform, grid, view, store.contrast_limits,
                                   tile_features=lambda i: store.get(t, tile=i), frame=True))

    def embedding(self, tile: int | None = None) -> dict[str, np.ndarray]:
        """The current image's features: what an EmbeddingStore keeps for one frame (float32,
        whatever the model's dtype: numpy has no bfloat16). Tiled: those of tile ``tile``."""
        self._require_image()
        if self._tiled is not None:
            if tile is None:
                raise ValueError(f"the image is tiled ({self.grid.describe()}): give tile=i for one tile's features")
            feats = self._tiled.tile_features(self.grid[int(tile)].index)
        elif tile is not None:
            raise ValueError("the image is not tiled: call embedding() without tile")
        else:
            feats = self._feats
        return {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).numpy()
                for k, v in feats.items()}

    def _require_image(self) -> None:
        if self._feats is None and self._tiled is None:
            raise RuntimeError("no image: call set_image(image) before predict()")

    # -- prompts -------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, points=None, labels=None, box=None, mask_logits=None, multimask: bool = True) -> Prediction:
        """Masks for one prompt set: clicks (x, y) with labels, a box, and/or earlier logits."""
        self._require_image()
        h, w = self._orig_hw
        pts, lab = check_points(points, labels, (h, w))
        bx = check_box(box, (h, w))
        low = self.image_size // 4
        mask = check_mask_logits(mask_logits, low)
        if pts is None and bx is None and mask is None:
            raise ValueError("no prompt: give points with labels, a box, or mask_logits")
        if self._tiled is not None:
            masks, scores, logits, objs, window = self._tiled.predict(pts, lab, bx, mask, multimask)
            return Prediction(masks, scores, logits, objs, window)
        out = decode_window(self.model, self.transform, self._feats, self._decoder_cache, (h, w),
                            pts, lab, bx, mask, multimask)
        return Prediction(*out)


def _check_tiling(tile_shape, halo, input_size: int) -> None:
    """Refuse bad ``tile_shape`` / ``halo`` values when the predictor is made, not later."""
    if tile_shape is None or isinstance(tile_shape, str):
        resolve_tiling(tile_shape, halo, (1, 1), input_size)  # None with a halo, or a bad word
        return
    th, tw = _pair(tile_shape, "tile_shape")
    TileGrid((th, tw), (th, tw), halo)  # one tile: checks the sizes, the halo against them
