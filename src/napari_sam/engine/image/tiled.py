"""A large image seen through windows: the tiles of a :class:`~.tiling.TileGrid` and windows
centred on prompts, each embedded on its own at the model's input size (its own resolution).

:class:`TiledImage` holds the features of one image's windows and answers prompts:

* **Tiles**: each tile's *outer* window (core + halo), embedded eagerly (:meth:`embed_tiles`,
  what ``ImagePredictor.set_image`` does) or read lazily from an EmbeddingStore when a prompt
  needs it (``tile_features``; a bounded LRU of loaded tiles).
* **Windows on demand**: a prompt is answered in the candidate window (tiles and the windows
  made so far) that holds its extent with the most margin (:mod:`.windows`); when none holds
  it with :func:`~.windows.required_margin`, a window of the tiles' outer size centred on the
  prompt is embedded now and kept in a small LRU (:data:`MAX_WINDOWS`). A click always has
  at least the halo in some tile, so this is for boxes and for prompts spread over tiles:
  several prompts of one object get one window holding all of them, hence one mask.
* **Contrast**: every window is mapped to 8 bit with the limits of the WHOLE image
  (:func:`whole_image_limits`): no seam between tiles. Windows are cropped before conversion,
  so no float copy of the whole image is ever made.
* **Masks** come back at the image's size (the window's mask pasted into place); the low-res
  logits are the window's, and the logits of the last :data:`MAX_LOGITS` predictions are
  remembered with their window, so feeding one back as ``mask_logits`` decodes in that window.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import numpy as np
import torch

from ...models.decoder import DecoderCache
from ..frames import read
from .preprocess import check_contrast_limits, robust_limits, to_uint8_rgb
from .windows import centred_window, choose_window, margin, prompt_extent, required_margin

MAX_WINDOWS = 8  # windows embedded on demand, kept (LRU)
MAX_LOADED_TILES = 16  # tiles read from a store, kept (LRU)
MAX_LOGITS = 256  # returned logit maps whose window is remembered
_LIMIT_SAMPLES = 1_000_000


def decode_window(model, tf, feats, cache, hw, pts, lab, bx, mask, multimask):
    """One prompt set decoded on one window's features (the whole image being one window):
    (masks (K, h, w) bool, scores (K,), logits (K, s, s), object scores or None), numpy."""
    h, w = hw
    kw = dict(tf.decode_options)
    if pts is not None:
        kw["point_coords"] = tf.points_to_input(pts, (h, w))[None]
        kw["point_labels"] = torch.as_tensor(lab, dtype=torch.int64, device=tf.device)[None]
    if bx is not None:
        kw["boxes"] = tf.boxes_to_input(bx, (h, w))
    if mask is not None:
        kw["mask_input"] = torch.as_tensor(mask, device=tf.device)[None]
    out = model.decode(feats, multimask=multimask, image_cache=cache, **kw)
    low_res, iou = out[0][0].float(), out[1][0]
    obj = out[2] if len(out) > 2 else None
    masks = (tf.upscale(low_res, (h, w)) > model.mask_threshold).cpu().numpy()
    logits = tf.returned_logits(low_res)
    objs = None if obj is None else obj[0].float().reshape(-1).cpu().numpy()
    return masks, iou.float().cpu().numpy(), logits.cpu().numpy(), objs


def check_image_shape(shape) -> tuple[int, int]:
    """(H, W) of an (H, W), (H, W, 1|3|4) image; a ValueError naming the shape otherwise."""
    shape = tuple(int(s) for s in shape)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {shape}")
    if min(shape[:2]) < 1:
        raise ValueError(f"image has no pixels: shape {shape}")
    return shape[0], shape[1]


def whole_image_limits(image, contrast_limits=None):
    """The contrast limits ``to_uint8_rgb`` would use on the whole image, so that every window
    is mapped alike: those given; None for uint8 (kept as it is); (0, 1) for bool; else the
    robust percentiles of the image (a numpy array exactly as ``to_uint8_rgb``; a lazy array
    from a strided sample of about a million pixels)."""
    limits = check_contrast_limits(contrast_limits)
    if limits is not None:
        return limits
    dtype = np.dtype(image.dtype)
    if dtype == np.uint8:
        return None
    if dtype == np.bool_:
        return (0.0, 1.0)
    if dtype.kind not in "iuf":
        raise ValueError(f"images must hold real numbers or booleans, got dtype {dtype}")
    rgba = len(image.shape) == 3 and image.shape[-1] == 4
    if isinstance(image, np.ndarray):
        return robust_limits(image[..., :3] if rgba else image)
    h, w = image.shape[:2]
    step = max(1, int(math.ceil(math.sqrt(h * w / _LIMIT_SAMPLES))))
    sample = read(image[::step, ::step])
    return robust_limits(sample[..., :3] if rgba else sample)


class FrameView:
    """Frame ``t`` of a FrameStack as a lazily cropped (H, W[, C]) image: ``view[ys, xs]``
    reads only that window."""

    def __init__(self, frames, t: int) -> None:
        self.frames, self.t = frames, int(t)
        self.shape = (*frames.frame_shape, *(() if frames.channels is None else (frames.channels,)))
        self.dtype = frames.dtype

    def __getitem__(self, key):
        data = self.frames.data
        return read(data[key] if self.frames.single else data[(self.t, *key)])


def _digest(logit_map: np.ndarray) -> bytes:
    # hashed from the array's own buffer (no bytes copy): this runs for every returned logit map
    return hashlib.blake2b(np.ascontiguousarray(logit_map, dtype=np.float32).data, digest_size=16).digest()


class TiledImage:
    """The windows of one image (see the module docstring).

    ``image``: (H, W[, C]) array-like cropped lazily (windows are read from it on demand);
    ``limits``: the whole image's contrast limits (:func:`whole_image_limits`);
    ``tile_features``: ``callable(i) -> features`` of tile ``i`` (an EmbeddingStore's), or
    None to encode tiles from ``image``; ``frame``: encode with the store's frame
    preprocessing (as the store's tiles are), else the image predictor's.
    """

    def __init__(self, model, transform, grid, image, limits, tile_features=None, frame=False) -> None:
        self.model, self.transform, self.grid = model, transform, grid
        self.image, self.limits, self.frame = image, limits, frame
        self._tile_source = tile_features
        self._tiles: dict[int, dict] = {} if tile_features is None else OrderedDict()
        self._windows: OrderedDict[tuple, dict] = OrderedDict()
        self._caches: OrderedDict[tuple, DecoderCache] = OrderedDict()
        self._logit_windows: OrderedDict[bytes, tuple] = OrderedDict()
        th, tw = grid.tile_shape
        hh, hw = grid.halo
        ih, iw = grid.image_shape
        self.outer_shape = (min(th + 2 * hh, ih), min(tw + 2 * hw, iw))
        self.need = required_margin(grid.halo)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.grid.image_shape

    # ------------------------------------------------------------------ features
    def encode_window(self, window) -> dict[str, torch.Tensor]:
        """Features of image window ``(y0, y1, x0, x1)``: cropped, mapped with the whole
        image's limits, embedded at the model's input size."""
        y0, y1, x0, x1 = window
        rgb = to_uint8_rgb(read(self.image[y0:y1, x0:x1]), self.limits)
        return self.transform.encode(rgb, frame=self.frame)

    def embed_tiles(self, progress=None) -> None:
        """Embed every tile's outer window now; ``progress(done, total)`` after each."""
        total = len(self.grid)
        for tile in self.grid:
            if tile.index not in self._tiles:
                self._tiles[tile.index] = self.encode_window(tile.outer)
            if progress is not None:
                progress(tile.index + 1, total)

    def tile_features(self, i: int) -> dict[str, torch.Tensor]:
        feats = self._tiles.get(i)
        if feats is not None:
            if self._tile_source is not None:
                self._tiles.move_to_end(i)
            return feats
        if self._tile_source is None:
            feats = self.encode_window(self.grid[i].outer)
        else:
            dev = self.transform.device
            feats = {k: torch.as_tensor(v).to(dev) for k, v in self._tile_source(i).items()}
        self._tiles[i] = feats
        if self._tile_source is not None and len(self._tiles) > MAX_LOADED_TILES:
            self._tiles.popitem(last=False)
        return feats

    def features(self, key: tuple) -> dict[str, torch.Tensor]:
        """Features of a window key: ("tile", i) or ("window", y0, y1, x0, x1)."""
        if key[0] == "tile":
            return self.tile_features(key[1])
        feats = self._windows.get(key)
        if feats is None:
            feats = self.encode_window(key[1:])
            self._windows[key] = feats
            if len(self._windows) > MAX_WINDOWS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        return feats

    def _cache(self, key: tuple) -> DecoderCache:
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = DecoderCache()
            if len(self._caches) > MAX_LOADED_TILES + MAX_WINDOWS:
                self._caches.popitem(last=False)
        else:
            self._caches.move_to_end(key)
        return cache

    @staticmethod
    def window_of(key: tuple, grid) -> tuple[int, int, int, int]:
        return grid[key[1]].outer if key[0] == "tile" else tuple(key[1:])

    # ------------------------------------------------------------------ windows
    def candidates(self, extent):
        """(y0, y1, x0, x1, key) of the tiles that can hold ``extent`` (the tile whose core
        holds its centre and that tile's neighbours: a halo is at most half a tile, so no
        other outer window reaches it) and of the windows made so far."""
        grid = self.grid
        centre = grid.tile_at((extent[0] + extent[1]) / 2, (extent[2] + extent[3]) / 2)
        out = []
        for r in range(max(centre.row - 1, 0), min(centre.row + 2, grid.rows)):
            for c in range(max(centre.col - 1, 0), min(centre.col + 2, grid.cols)):
                t = grid[r * grid.cols + c]
                out.append((*t.outer, ("tile", t.index)))
        out += [(*key[1:], key) for key in self._windows]
        return out

    def window_for(self, pts, bx) -> tuple:
        """The key of the window answering a prompt with points ``pts`` and box ``bx``."""
        extent = prompt_extent(pts, bx)
        best = choose_window(extent, self.candidates(extent), self.image_shape, self.need)
        if best is not None:
            return best[4]
        return ("window", *centred_window(extent, self.outer_shape, self.image_shape, self.need))

    def _logits_window(self, mask) -> tuple:
        key = self._logit_windows.get(_digest(mask[0]))
        if key is None:
            raise ValueError(
                "mask_logits do not come from a recent prediction on this image: on a tiled image "
                "logits belong to the window they were predicted in (give res.logits[i] of an "
                "earlier predict() on the same image)"
            )
        return key

    # ------------------------------------------------------------------ prompts
    def predict(self, pts, lab, bx, mask, multimask: bool):
        """(masks (K, H, W) bool at the image's size, scores, window logits, object scores,
        window (y0, y1, x0, x1)) for checked prompts in image pixels."""
        if mask is not None:
            key = self._logits_window(mask)
            if pts is not None or bx is not None:
                window = self.window_of(key, self.grid)
                if margin(prompt_extent(pts, bx), window, self.image_shape) < 0:
                    raise ValueError(
                        f"the prompts lie outside the window {window} (y0, y1, x0, x1) that mask_logits "
                        "were predicted in: predict without mask_logits to get a window holding them all"
                    )
        else:
            key = self.window_for(pts, bx)
        y0, y1, x0, x1 = self.window_of(key, self.grid)
        feats = self.features(key)
        lp = None if pts is None else pts - np.array([x0, y0], dtype=np.float64)
        lb = None if bx is None else bx - np.array([x0, y0, x0, y0], dtype=np.float64)
        masks, scores, logits, objs = decode_window(
            self.model, self.transform, feats, self._cache(key), (y1 - y0, x1 - x0), lp, lab, lb, mask, multimask)
        full = np.zeros((masks.shape[0], *self.image_shape), dtype=bool)
        full[:, y0:y1, x0:x1] = masks
        for m in logits:
            digest = _digest(m)
            self._logit_windows[digest] = key
            self._logit_windows.move_to_end(digest)
        while len(self._logit_windows) > MAX_LOGITS:
            self._logit_windows.popitem(last=False)
        return full, scores, logits, objs, (y0, y1, x0, x1)
