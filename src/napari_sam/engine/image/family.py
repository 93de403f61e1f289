"""What differs between model families, in one place: the per-family transform.

``transform_for(model)`` picks a :class:`Sam1Transform` or :class:`Sam2Transform` once; every
engine path (``ImagePredictor``, segment-everything, the video feature encoder, the embedding
store) goes through it instead of asking ``model.family``. Each rule is the official one:

* **Image -> model input** — :meth:`~FamilyTransform.preprocess` (the official image
  predictor's) and :meth:`~FamilyTransform.preprocess_frame` (what stores and video use: SAM 1
  the same, SAM 2 the official video loader's); see :mod:`napari_sam.engine.image.preprocess`.
* **Encoder input dtype** (one rule for every encode path): the preprocessed float32 image is
  cast to the device and dtype of the model's first floating-point parameter
  (:meth:`~FamilyTransform.encoder_input`, :meth:`~FamilyTransform.encode`).
* **Prompt coordinates, image -> model input** (:meth:`~FamilyTransform.points_to_input`,
  :meth:`~FamilyTransform.boxes_to_input`), in the official precision: SAM 1
  (``ResizeLongestSide.apply_coords``) scales in float64 by ``new_w / w`` and then casts to
  float32; SAM 2 (``SAM2Transforms.transform_coords``) works in float32, ``x / w * S``.
* **Low-res logits -> the image's size** (:meth:`~FamilyTransform.upscale`): SAM 1 bilinear to
  S x S, crop the padding, bilinear to (H, W); SAM 2 bilinear straight to (H, W).
* **What a prediction returns**: SAM 2 returns its low-res logits clamped to [-32, 32] and an
  object score, SAM 1 neither (:meth:`~FamilyTransform.returned_logits`, ``decode_options``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import preprocess_sam1, preprocess_sam2_image, preprocess_sam2_video, sam1_resized_shape
from ..store.record import model_param

SAM2_LOGIT_CLAMP = 32.0  # the official SAM2ImagePredictor returns its low-res logits clamped


class FamilyTransform:
    """The per-family rules of one model (see the module docstring). Stateless apart from the
    model: the device and dtype are read from the model on each use, so a model moved after
    the transform was made is followed."""

    family: str
    #: what :meth:`preprocess_frame` is, as an embedding store records it
    frame_preprocess_kind: str
    #: extra keyword arguments of ``model.decode`` for an interactive prediction
    decode_options: dict = {}
    #: dtype the official automatic generator keeps the grid points of its records in
    record_point_dtype = np.float64

    def __init__(self, model) -> None:
        self.model = model
        self.image_size = int(model.image_size)

    # ------------------------------------------------------------------ model placement
    @property
    def device(self) -> torch.device:
        p = model_param(self.model)
        return p.device if p is not None else torch.device("cpu")

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """The preprocessed image on the model's device, in its dtype (the one dtype rule)."""
        p = model_param(self.model)
        return x if p is None else x.to(device=p.device, dtype=p.dtype)

    # ------------------------------------------------------------------ images
    def input_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The (h, w) an image of ``image_hw`` occupies in the S x S model input."""
        raise NotImplementedError

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, S, S) float32, as the official image predictor."""
        raise NotImplementedError

    def preprocess_frame(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, S, S) float32, as stores and video sessions encode frames."""
        return self.preprocess(rgb)

    def encode(self, rgb: np.ndarray, frame: bool = False) -> dict[str, torch.Tensor]:
        """``model.encode_image`` of one (H, W, 3) uint8 image (``frame``: the frame
        preprocessing), no autograd."""
        x = self.preprocess_frame(rgb) if frame else self.preprocess(rgb)
        with torch.inference_mode():
            return self.model.encode_image(self.encoder_input(x))

    # ------------------------------------------------------------------ prompts
    def points_to_input(self, points: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
        """(..., 2) (x, y) image pixels -> float32 model-input pixels on the model's device."""
        raise NotImplementedError

    def boxes_to_input(self, boxes: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
        """(..., 4) x0 y0 x1 y1 image pixels -> (B, 4) float32 model-input pixels (as the
        official predictors: each corner scaled as a point)."""
        corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
        return self.points_to_input(corners, image_hw).reshape(-1, 4)

    # ------------------------------------------------------------------ outputs
    def upscale(self, low_res: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """(..., s, s) low-res logits -> (..., H, W) float32 at the image's size."""
        lead, s = low_res.shape[:-2], low_res.shape[-2:]
        # one map per "image" of batch N, channel 1: torch's CPU bilinear takes a faster path
        # for one channel than for three (no internal copies); the numbers are the same up
        # to float rounding
        x = low_res.reshape(-1, 1, *s).float()
        x = self._upscale(x, (int(image_hw[0]), int(image_hw[1])))
        return x.reshape(*lead, *x.shape[-2:])

    def _upscale(self, x: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError

    def returned_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """The low-res logits a prediction hands back (feed one back as ``mask_logits``)."""
        return low_res


def _resize(x: torch.Tensor, hw: tuple[int, int], crop: tuple[int, int] | None = None) -> torch.Tensor:
    """Bilinear (align_corners=False) to ``hw``, then the top-left ``crop`` of it (if given).
    An exact integer enlargement (SAM's 256 -> 1024) takes :func:`_upsample_int`: the same
    weights, only the cropped part computed."""
    h, w = x.shape[-2:]
    oh, ow = int(hw[0]), int(hw[1])
    if (h, w) == (oh, ow):  # bilinear to the same size is an exact copy
        return x if crop is None else x[..., :crop[0], :crop[1]]
    if oh % h == 0 and oh // h == ow // w and ow % w == 0 and oh // h <= 16:
        return _upsample_int(x, oh // h, crop or (oh, ow))
    x = F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False)
    return x if crop is None else x[..., :crop[0], :crop[1]]


def _upsample_int(x: torch.Tensor, s: int, crop: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=s, mode="bilinear")[..., :crop[0], :crop[1]]`` for an
    integer ``s``, as two separable passes of s phases each: output pixel ``s*j + p`` mixes low
    pixels ``j`` and ``j -+ 1`` with fixed weights (replicated edges give torch's clamping).
    Only the crop's rows and columns are computed; a few times faster than the generic kernel."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    phases = []
    for p in range(s):
        d = (p + 0.5) / s - 0.5  # source offset of phase p from low pixel j
        phases.append((0, -d, 1 + d) if d < 0 else (1, 1 - d, d))  # (first padded index, w0, w1)

    def along(t: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
        n = -(-n_out // s)  # low pixels whose phases cover the first n_out outputs
        shape = list(t.shape)
        shape[dim] = n
        out = t.new_empty(*shape[:len(shape) + dim + 1], s, *shape[len(shape) + dim + 1:])
        for p, (lo, _, w1) in enumerate(phases):  # lerp: w0 * a + w1 * b in one pass
            torch.lerp(t.narrow(dim, lo, n), t.narrow(dim, lo + 1, n), w1, out=out.select(dim, p))
        shape[dim] = n * s
        return out.view(shape).narrow(dim, 0, n_out)

    return along(along(xp, -1, int(crop[1])), -2, int(crop[0])).contiguous()


class Sam1Transform(FamilyTransform):
    """SAM 1 (``SamPredictor``): longest side to S, zero padding, float64 prompt scaling."""

    family = "sam1"
    frame_preprocess_kind = "sam1-image-predictor"

    def input_hw(self, image_hw):
        return sam1_resized_shape(int(image_hw[0]), int(image_hw[1]), self.image_size)

    def preprocess(self, rgb):
        return preprocess_sam1(rgb, self.image_size)

    def points_to_input(self, points, image_hw):
        h, w = image_hw
        ih, iw = self.input_hw(image_hw)
        scaled = np.asarray(points, dtype=np.float64) * np.array([iw / w, ih / h])
        return torch.as_tensor(scaled, dtype=torch.float32, device=self.device)

    def _upscale(self, x, image_hw):
        ih, iw = self.input_hw(image_hw)
        x = _resize(x, (self.image_size, self.image_size), crop=(ih, iw))
        return _resize(x, image_hw)


class Sam2Transform(FamilyTransform):
    """SAM 2 (``SAM2ImagePredictor`` / video loader): resize to S x S, float32 prompt scaling."""

    family = "sam2"
    frame_preprocess_kind = "sam2-video-loader"
    decode_options = {"return_object_scores": True}
    record_point_dtype = np.float32

    def input_hw(self, image_hw):
        return (self.image_size, self.image_size)

    def preprocess(self, rgb):
        return preprocess_sam2_image(rgb, self.image_size)

    def preprocess_frame(self, rgb):
        return preprocess_sam2_video(rgb, self.image_size)

    def points_to_input(self, points, image_hw):
        h, w = image_hw
        pts = torch.as_tensor(np.asarray(points), dtype=torch.float32, device=self.device)
        wh = torch.tensor([w, h], dtype=torch.float32, device=pts.device)
        return pts / wh * self.image_size

    def _upscale(self, x, image_hw):
        return _resize(x, image_hw)

    def returned_logits(self, low_res):
        return low_res.clamp(-SAM2_LOGIT_CLAMP, SAM2_LOGIT_CLAMP)


_TRANSFORMS = {t.family: t for t in (Sam1Transform, Sam2Transform)}


def transform_for(model) -> FamilyTransform:
    """The transform of ``model``'s family (a model from ``napari_sam.load_model()``)."""
    family = getattr(model, "family", None)
    cls = _TRANSFORMS.get(family)
    if cls is None:
        raise ValueError(f"unknown model family {family!r}: expected one of {sorted(_TRANSFORMS)} "
                         "(a model from napari_sam.load_model())")
    return cls(model)
