"""ImagePredictor: one 2D image (or one frame of a stack) in, masks out — SAM 1 and SAM 2.

Numbers equal the official ``SamPredictor`` / ``SAM2ImagePredictor``: the same preprocessing,
prompt transforms and mask upscaling, all from the model family's transform
(:mod:`napari_sam.engine.image.family`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...models.decoder import DecoderCache
from .family import transform_for
from .preprocess import to_uint8_rgb
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


class ImagePredictor:
    """Embed an image once with :meth:`set_image`, then :meth:`predict` masks for prompts."""

    def __init__(self, model: torch.nn.Module) -> None:
        try:
            self.transform = transform_for(model)  # every per-family rule, chosen once
        except ValueError as e:
            raise TypeError(f"ImagePredictor needs a model from napari_sam.load_model(): {e}") from None
        self.model = model.eval()
        self._feats: dict[str, torch.Tensor] | None = None
        self._orig_hw: tuple[int, int] | None = None
        self._decoder_cache = DecoderCache()  # the decoder's prompt-independent work on this image

    # -- image ---------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    @torch.inference_mode()
    def set_image(self, image, contrast_limits=None) -> None:
        """Embed an (H, W) or (H, W, 3) image of any dtype (see ``to_uint8_rgb``)."""
        rgb = to_uint8_rgb(image, contrast_limits)
        self._feats = self.transform.encode(rgb)
        self._decoder_cache.clear()
        self._orig_hw = rgb.shape[:2]

    def set_embedding(self, features, image_hw: tuple[int, int]) -> None:
        """Use features computed elsewhere (an EmbeddingStore frame, or :meth:`embedding`)."""
        dev = self.transform.device
        self._feats = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).to(dev)
                       for k, v in features.items()}
        self._decoder_cache.clear()
        self._orig_hw = (int(image_hw[0]), int(image_hw[1]))

    def set_frame(self, store, t: int) -> None:
        """Use frame ``t`` of an :class:`EmbeddingStore` (computed on demand if missing)."""
        self.set_embedding(store.get(t), store.frame_shape[:2])

    def embedding(self) -> dict[str, np.ndarray]:
        """The current image's features: what an EmbeddingStore keeps for one frame (float32,
        whatever the model's dtype: numpy has no bfloat16)."""
        self._require_image()
        return {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).numpy()
                for k, v in self._feats.items()}

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
        tf = self.transform
        kw = dict(tf.decode_options)
        if pts is not None:
            kw["point_coords"] = tf.points_to_input(pts, (h, w))[None]
            kw["point_labels"] = torch.as_tensor(lab, dtype=torch.int64, device=tf.device)[None]
        if bx is not None:
            kw["boxes"] = tf.boxes_to_input(bx, (h, w))
        if mask is not None:
            kw["mask_input"] = torch.as_tensor(mask, device=tf.device)[None]
        out = self.model.decode(self._feats, multimask=multimask, image_cache=self._decoder_cache, **kw)
        low_res, iou = out[0][0].float(), out[1][0]
        obj = out[2] if len(out) > 2 else None
        masks = (tf.upscale(low_res, (h, w)) > self.model.mask_threshold).cpu().numpy()
        logits = tf.returned_logits(low_res)
        objs = None if obj is None else obj[0].float().reshape(-1).cpu().numpy()
        return Prediction(masks, iou.float().cpu().numpy(), logits.cpu().numpy(), objs)
