"""ImagePredictor: one 2D image (or one frame of a stack) in, masks out — SAM 1 and SAM 2.

Numbers equal the official ``SamPredictor`` / ``SAM2ImagePredictor``: the same preprocessing,
prompt transforms and mask upscaling (see :mod:`napari_sam.engine.preprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .malloc_tuning import tune_malloc
from .preprocess import preprocess_sam1, preprocess_sam2_image, sam1_resized_shape, to_uint8_rgb
from .prompts import check_box, check_mask_logits, check_points


@dataclass
class Prediction:
    """``masks`` (K, H, W) bool at the image's size, ``scores`` (K,) predicted IoU,
    ``logits`` (K, S/4, S/4) low-res logits (feed one back as ``mask_logits``),
    ``object_scores`` (1,) SAM 2 object-presence logit of the prompt set (> 0: object visible), else None."""

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    object_scores: np.ndarray | None = None

    @property
    def best(self) -> np.ndarray:
        """The mask with the highest predicted IoU."""
        return self.masks[int(np.argmax(self.scores))]


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class ImagePredictor:
    """Embed an image once with :meth:`set_image`, then :meth:`predict` masks for prompts."""

    def __init__(self, model: torch.nn.Module) -> None:
        if getattr(model, "family", None) not in ("sam1", "sam2"):
            raise TypeError("ImagePredictor needs a model from napari_sam.load_model()")
        tune_malloc()
        self.model = model.eval()
        self._feats: dict[str, torch.Tensor] | None = None
        self._orig_hw: tuple[int, int] | None = None
        self._input_hw: tuple[int, int] | None = None
        self._decoder_cache: dict = {}  # the decoder's prompt-independent work on this image

    # -- image ---------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    def _input_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.model.family == "sam1":
            return sam1_resized_shape(h, w, self.image_size)
        return (self.image_size, self.image_size)

    @torch.inference_mode()
    def set_image(self, image, contrast_limits=None) -> None:
        """Embed an (H, W) or (H, W, 3) image of any dtype (see ``to_uint8_rgb``)."""
        rgb = to_uint8_rgb(image, contrast_limits)
        pre = preprocess_sam1 if self.model.family == "sam1" else preprocess_sam2_image
        x = pre(rgb, self.image_size).to(_model_device(self.model))
        self._feats = self.model.encode_image(x)
        self._decoder_cache = {}
        self._orig_hw = rgb.shape[:2]
        self._input_hw = self._input_shape(*rgb.shape[:2])

    def set_embedding(self, features, image_hw: tuple[int, int]) -> None:
        """Use features computed elsewhere (an EmbeddingStore frame, or :meth:`embedding`)."""
        dev = _model_device(self.model)
        self._feats = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).to(dev)
                       for k, v in features.items()}
        self._decoder_cache = {}
        self._orig_hw = (int(image_hw[0]), int(image_hw[1]))
        self._input_hw = self._input_shape(*self._orig_hw)

    def set_frame(self, store, t: int) -> None:
        """Use frame ``t`` of an :class:`EmbeddingStore` (computed on demand if missing)."""
        self.set_embedding(store.get(t), store.frame_shape[:2])

    def embedding(self) -> dict[str, np.ndarray]:
        """The current image's features: what an EmbeddingStore keeps for one frame."""
        self._require_image()
        return {k: v.detach().cpu().numpy() for k, v in self._feats.items()}

    def _require_image(self) -> None:
        if self._feats is None:
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
        dev = _model_device(self.model)
        ih, iw = self._input_hw
        scale = np.array([iw / w, ih / h])
        kw = {}
        if pts is not None:
            kw["point_coords"] = torch.as_tensor(pts * scale, dtype=torch.float32, device=dev)[None]
            kw["point_labels"] = torch.as_tensor(lab, dtype=torch.int64, device=dev)[None]
        if bx is not None:
            kw["boxes"] = torch.as_tensor(bx * np.tile(scale, 2), dtype=torch.float32, device=dev)[None]
        if mask is not None:
            kw["mask_input"] = torch.as_tensor(mask, device=dev)[None]
        if self.model.family == "sam2":
            kw["return_object_scores"] = True
        out = self.model.decode(self._feats, multimask=multimask, image_cache=self._decoder_cache, **kw)
        low_res, iou = out[0], out[1]
        obj = out[2] if len(out) > 2 else None
        logits = low_res[0].float()
        up = self._upscale(logits[None])[0]
        masks = (up > self.model.mask_threshold).cpu().numpy()
        if self.model.family == "sam2":
            logits = logits.clamp(-32.0, 32.0)  # as the official SAM2ImagePredictor returns them
        objs = None if obj is None else obj[0].float().reshape(-1).cpu().numpy()
        return Prediction(masks, iou[0].float().cpu().numpy(), logits.cpu().numpy(), objs)

    def _upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, s, s) low-res logits -> (B, K, H, W), as each official predictor does."""
        h, w = self._orig_hw
        if self.model.family == "sam1":
            s = self.image_size
            ih, iw = self._input_hw
            x = F.interpolate(logits, (s, s), mode="bilinear", align_corners=False)[..., :ih, :iw]
            if (ih, iw) == (h, w):  # same size: bilinear resampling would be an exact copy
                return x
            return F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
        return F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
