"""Automatic instance segmentation (AIS) with micro-sam's decoder: segment every cell, no prompts.

micro-sam's ``InstanceSegmentationWithDecoder`` (1.8.14), untiled, in numpy / scipy / skimage:

1. The image is embedded as for a click (SamPredictor's preprocessing, through the model's
   family transform) and the UNETR decoder (:mod:`napari_sam.models.ais`) turns the embedding
   into three maps in [0, 1] at the image's size: foreground, distance to the object centre,
   distance to the object boundary (both distances are small inside an object, near its
   centre).
2. :func:`ais_labels` (micro-sam's ``generate`` -> torch_em's
   ``watershed_from_center_and_boundary_distances``): the foreground is smoothed (Gaussian,
   ``foreground_smoothing``) and both distance maps too (``distance_smoothing``); seeds are the
   8-connected components where centre distance < ``center_distance_threshold`` and boundary
   distance < ``boundary_distance_threshold`` inside the foreground (smoothed foreground >
   ``foreground_threshold``); a seeded watershed on the smoothed boundary distance, restricted
   to the foreground, grows them; objects under ``min_size`` pixels are removed. Ids are 1..n.

The Gaussian is vigra's / bioimage-cpp's (the filter micro-sam calls): kernel radius
``ceil(3 * sigma)``, mirrored borders (scipy's ``mode="mirror"``). micro-sam's watershed
quantises heights to 65,536 levels and breaks ties in an unspecified order; skimage's does
neither, so labels may differ on a few tie pixels (measured: see tests/engine/test_ais.py).

Tiles (``tile_shape`` / ``halo``, micro-sam's meaning; ``"auto"``: from the image and the
model): the decoder runs on each tile's own embedding, the maps are stitched core by core and
one watershed labels the whole image (:mod:`.ais_tiled`, micro-sam's
``TiledInstanceSegmentationWithDecoder``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.measure import label as connected_components
from skimage.segmentation import relabel_sequential, watershed

from ...models.ais import AisDecoder, build_ais_decoder
from ..frames import read
from ..image.family import transform_for
from ..image.preprocess import to_uint8_rgb
from ..image.tiling import resolve_tiling
from .ais_tiled import generate_ais_tiled
from .tiled import check_image, write_whole

Progress = Callable[[int, int], object]


@dataclass(frozen=True)
class AisParams:
    """micro-sam's defaults (``InstanceSegmentationWithDecoder.generate``)."""

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    foreground_smoothing: float = 1.0  # Gaussian sigma on the foreground map; 0: none
    distance_smoothing: float = 1.6  # Gaussian sigma on both distance maps; 0: none
    min_size: int = 0  # objects with fewer pixels are removed

    def __post_init__(self) -> None:
        for name in ("foreground_smoothing", "distance_smoothing"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"AisParams.{name} must be a finite number >= 0, got {v!r}")
        for name in ("center_distance_threshold", "boundary_distance_threshold", "foreground_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"AisParams.{name} must be finite, got {getattr(self, name)!r}")
        if int(self.min_size) != self.min_size or self.min_size < 0:
            raise ValueError(f"AisParams.min_size must be an integer >= 0, got {self.min_size!r}")


def gaussian_smoothing(a: np.ndarray, sigma: float) -> np.ndarray:
    """vigra's Gaussian (what micro-sam calls through bioimage-cpp): float32, radius
    ``ceil(3 * sigma)``, mirrored borders."""
    a = np.asarray(a, dtype=np.float32)
    return ndi.gaussian_filter(a, sigma, mode="mirror", radius=int(math.ceil(3.0 * sigma)))


def ais_labels(foreground, center_distances, boundary_distances, params: AisParams | None = None,
               **changes) -> np.ndarray:
    """(H, W) int32 labels (0 background, ids 1..n) from the decoder's three (H, W) maps."""
    p = dataclasses.replace(params or AisParams(), **changes)
    maps = [np.asarray(m, dtype=np.float32) for m in (foreground, center_distances, boundary_distances)]
    if maps[0].ndim != 2 or any(m.shape != maps[0].shape for m in maps):
        raise ValueError("ais_labels takes three (H, W) maps of one shape, got "
                         f"{[m.shape for m in maps]}")
    if not all(np.isfinite(m).all() for m in maps):
        raise ValueError("ais_labels: the decoder maps hold NaN or infinite values")
    fg, centre, boundary = maps
    if p.foreground_smoothing > 0:
        fg = gaussian_smoothing(fg, p.foreground_smoothing)
    if p.distance_smoothing > 0:
        centre = gaussian_smoothing(centre, p.distance_smoothing)
        boundary = gaussian_smoothing(boundary, p.distance_smoothing)
    inside = fg > p.foreground_threshold
    seeds = (centre < p.center_distance_threshold) & (boundary < p.boundary_distance_threshold) & inside
    markers = connected_components(seeds, connectivity=2)
    seg = watershed(boundary, markers=markers, mask=inside, connectivity=1)
    if p.min_size > 0 and seg.max() > 0:
        sizes = np.bincount(seg.ravel())
        seg[sizes[seg] < p.min_size] = 0
    seg, _, _ = relabel_sequential(seg)
    return seg.astype(np.int32, copy=False)


class AisSegmenter:
    """``AisSegmenter(model, **params).generate(image) -> labels (H, W) int32``.

    ``model``: a SAM 1 family model from :func:`napari_sam.load_model` that carries micro-sam's
    decoder (``model.ais_decoder_state``, e.g. ``load_model("vit_b_lm")``); ``params``: fields
    of :class:`AisParams`. The decoder runs on the model's device in float32.

    ``tile_shape`` / ``halo`` ((h, w) image pixels, micro-sam's meaning; ``"auto"``: from the
    image and the model, see :mod:`napari_sam.engine.image.tiling`): each tile's outer window
    is embedded at its own resolution, the decoder's maps are stitched core by core and
    labelled at once (:mod:`.ais_tiled`). None: the whole image at once.
    """

    def __init__(self, model, params: AisParams | None = None, tile_shape=None, halo=None, **changes) -> None:
        state = getattr(model, "ais_decoder_state", None)
        if state is None:
            raise ValueError("this model has no instance-segmentation decoder (model.ais_decoder_state "
                             "is None): load a micro-sam model that has one, e.g. load_model('vit_b_lm'), "
                             "or use AutomaticSegmenter (the point grid)")
        try:
            self.transform = transform_for(model)
        except ValueError as e:
            raise TypeError(f"AisSegmenter needs a model from napari_sam.load_model(): {e}") from None
        if getattr(model, "family", None) != "sam1":
            raise ValueError(f"micro-sam's AIS decoder runs on SAM 1 embeddings; this model is "
                             f"{getattr(model, 'family', '?')!r}")
        self.model = model.eval()
        self.params = dataclasses.replace(params or AisParams(), **changes)
        self.decoder: AisDecoder = build_ais_decoder(state, device=self.transform.device)
        # bad tilings are refused now (checked before a tile is clamped to the image)
        resolve_tiling(tile_shape, halo, (1, 1), self.transform.image_size)
        self.tile_shape, self.halo = tile_shape, halo

    def tiling(self, image_shape):
        """The :class:`~napari_sam.engine.image.tiling.TileGrid` used on an image of
        ``image_shape`` ((H, W[, C])), or None when it is segmented whole."""
        return resolve_tiling(self.tile_shape, self.halo, tuple(image_shape)[:2], self.transform.image_size)

    @torch.inference_mode()
    def predict_maps(self, image=None, contrast_limits=None, features=None, image_hw=None) -> np.ndarray:
        """(3, H, W) float32: foreground, centre distance, boundary distance at the image's size.

        ``features``: the image's encoder output (``ImagePredictor.embedding()`` or an
        EmbeddingStore frame) with ``image_hw`` its (H, W), instead of ``image``."""
        if features is None:
            if image is None:
                raise ValueError("predict_maps needs an image, or features with image_hw")
            rgb = to_uint8_rgb(image, contrast_limits)
            image_hw = rgb.shape[:2]
            features = self.transform.encode(rgb)
        elif image_hw is None:
            raise ValueError("predict_maps: give image_hw (the image's (H, W)) with features")
        embed = features["image_embed"]
        embed = torch.as_tensor(np.asarray(embed) if not torch.is_tensor(embed) else embed)
        if embed.ndim == 3:
            embed = embed[None]
        embed = embed.to(device=self.transform.device, dtype=torch.float32)
        h, w = int(image_hw[0]), int(image_hw[1])
        maps = AisDecoder.to_image(self.decoder(embed), self.transform.input_hw((h, w)), (h, w),
                                   self.transform.image_size)
        return maps[0].float().cpu().numpy()

    def labels(self, maps) -> np.ndarray:
        """(H, W) int32 labels of the decoder's (3, H, W) maps with this segmenter's parameters."""
        return ais_labels(maps[0], maps[1], maps[2], self.params)

    def generate(self, image, contrast_limits=None, features=None, progress: Progress | None = None,
                 tile_features=None, out=None):
        """Labels (H, W) int32 of an (H, W) or (H, W, 3) image of any dtype; 0 = background.

        ``features``: the whole image's encoder output, to skip the encoder (untiled only).
        ``tile_features(i)``: tile ``i``'s encoder output or None (an untiled image is tile 0).
        ``out``: an (H, W) integer array (numpy, zarr) the labels are written into and
        returned. Untiled, ``progress(done, 2)`` after the decoder and after the watershed;
        tiled, ``progress(tiles_done, n_tiles)`` (see :mod:`.ais_tiled`; an exception raised
        there stops the run, the tiles done so far are in ``out``)."""
        hw = check_image(image)
        grid = self.tiling(hw)
        if grid is not None:
            if features is not None:
                raise ValueError("features= is one whole image's encoder output; with tiles give "
                                 "tile_features=(tile index -> features) instead")
            return generate_ais_tiled(self._window_maps, self.labels, image, grid, contrast_limits,
                                      tile_features, progress, out)
        if features is None and tile_features is not None:
            features = tile_features(0)
        if features is None:
            maps = self.predict_maps(read(image), contrast_limits)
        else:
            maps = self.predict_maps(features=features, image_hw=hw)
        if progress is not None:
            progress(1, 2)
        labels = self.labels(maps)
        if out is not None:
            labels = write_whole(out, labels)
        if progress is not None:
            progress(2, 2)
        return labels

    def _window_maps(self, rgb, features, hw) -> np.ndarray:
        """(3, h, w) maps of one tile window: its features, else its 8-bit ``rgb``."""
        if features is None:
            return self.predict_maps(rgb)
        return self.predict_maps(features=features, image_hw=hw)
