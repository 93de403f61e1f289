"""SAM 1: configuration, builder and the model object the engine talks to.

``build_sam1(Sam1Config.preset("vit_b"))`` gives a module whose ``state_dict()`` equals the
official flat checkpoint (``sam_vit_b_01ec64.pth``): ``load_state_dict(sd, strict=True)``.
Pixel mean / std are not buffers here: the engine preprocesses (see ``checkpoints.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..decoder import DecoderCache, MaskDecoder, PromptEncoder, TwoWayTransformer, decode_prompts, image_work
from .image_encoder import ImageEncoderViT


@dataclass(frozen=True)
class Sam1Config:
    """Sizes of a SAM 1 model. Defaults are ViT-B; see :data:`SAM1_PRESETS`."""

    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    out_chans: int = 256
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    def __post_init__(self) -> None:
        if self.out_chans != self.prompt_embed_dim:
            raise ValueError("out_chans (image embedding width) must equal prompt_embed_dim")
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        object.__setattr__(self, "encoder_global_attn_indexes", tuple(self.encoder_global_attn_indexes))

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    @classmethod
    def preset(cls, name: str, **overrides) -> Sam1Config:
        """``"vit_b" | "vit_l" | "vit_h"`` (a ``sam_`` prefix is accepted), fields overridable."""
        key = name.removeprefix("sam_")
        if key not in SAM1_PRESETS:
            raise KeyError(f"unknown SAM 1 preset {name!r}: choose one of {', '.join(SAM1_PRESETS)}")
        return dataclasses.replace(SAM1_PRESETS[key], **overrides)


SAM1_PRESETS: dict[str, Sam1Config] = {
    "vit_b": Sam1Config(),
    "vit_l": Sam1Config(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": Sam1Config(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
    ),
}


def _prompt_batch(*tensors: torch.Tensor | None) -> int:
    sizes = {t.shape[0] for t in tensors if t is not None} - {1}
    if len(sizes) > 1:
        raise ValueError(f"prompt batches disagree: {sorted(sizes)} (each must be P or 1)")
    return sizes.pop() if sizes else 1


def _to_batch(t: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    if t is None or t.shape[0] == batch:
        return t
    return t.expand(batch, *t.shape[1:])


class Sam1(nn.Module):
    """SAM 1 (ViT image encoder, prompt encoder, mask decoder) behind the model-layer contract."""

    family = "sam1"
    mask_threshold = 0.0
    pixel_mean = (123.675, 116.28, 103.53)  # on 0-255 RGB; applied by the engine
    pixel_std = (58.395, 57.12, 57.375)

    def __init__(
        self,
        image_encoder: nn.Module,  # ImageEncoderViT, or MobileSAM's TinyViT (models.tinyvit)
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        config: Sam1Config | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config

    @property
    def image_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def device(self) -> torch.device:
        return next(self.image_encoder.parameters()).device

    def encode_image(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, S, S)`` preprocessed (normalised, zero-padded) -> ``{"image_embed": (B, 256, S/16, S/16)}``."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected (B, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        return {"image_embed": self.image_encoder(x)}

    def decode(
        self,
        feats: dict[str, torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = True,
        image_cache: DecoderCache | dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode P prompt sets against one image.

        ``point_coords (P, N, 2)`` (x, y) and ``boxes (P, 4)`` in model-input pixels,
        ``point_labels (P, N)`` (1 fg, 0 bg, -1 padding), ``mask_input (P, 1, S/4, S/4)``
        logits. A prompt with batch 1 is shared by all P sets. ``feats["image_embed"]`` has
        batch 1 (shared, never copied) or P. -> ``(P, K, S/4, S/4)`` logits, ``(P, K)`` IoU.
        
        ``image_cache``: a :class:`~napari_sam.models.decoder.DecoderCache` the caller keeps
        beside ``feats`` (one image; a plain dict per image is still accepted); under no-grad
        inference and without ``mask_input`` the decoder keeps its prompt-independent work in
        it — the same masks, a faster click.
        """
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels go together")
        embed = feats["image_embed"]
        if boxes is not None:
            boxes = boxes.reshape(-1, 4)
        batch = _prompt_batch(point_coords, boxes, mask_input)
        if embed.shape[0] not in (1, batch):
            raise ValueError(f"image_embed batch {embed.shape[0]} does not match {batch} prompt sets")
        dtype = embed.dtype
        points = None
        if point_coords is not None:
            coords = _to_batch(point_coords.to(dtype), batch)
            labels = _to_batch(point_labels, batch)
            if coords.shape[:2] != labels.shape[:2]:
                raise ValueError(f"point_coords {tuple(coords.shape)} vs point_labels {tuple(labels.shape)}")
            points = (coords, labels)
        if boxes is not None:
            boxes = _to_batch(boxes.to(dtype), batch)
        if mask_input is not None:
            mask_input = mask_input.to(dtype)
        masks, iou, _, _ = decode_prompts(
            self.prompt_encoder, self.mask_decoder, embed, points, boxes, mask_input, multimask,
            batch=batch, repeat_image=embed.shape[0] == 1,
            image_work=image_work(image_cache, feats, self.mask_decoder, mask_input),
        )
        return masks, iou


def build_sam1(cfg: Sam1Config | str = "vit_b") -> Sam1:
    """A SAM 1 model for ``cfg`` (a :class:`Sam1Config` or a preset name), randomly initialised.

    Build under ``with torch.device("meta"):`` to get shapes without allocating weights.
    """
    if isinstance(cfg, str):
        cfg = Sam1Config.preset(cfg)
    image_encoder = ImageEncoderViT(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.encoder_embed_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_num_heads,
        mlp_ratio=cfg.mlp_ratio,
        out_chans=cfg.out_chans,
        window_size=cfg.window_size,
        global_attn_indexes=cfg.encoder_global_attn_indexes,
    )
    return Sam1(image_encoder, *build_sam1_heads(cfg), cfg)


def build_sam1_heads(cfg) -> tuple[PromptEncoder, MaskDecoder]:
    """SAM 1's prompt encoder and mask decoder for ``cfg`` (any config with the decoder fields
    of :class:`Sam1Config`; MobileSAM's vit_t has the same heads)."""
    grid = cfg.embedding_size
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.image_size, cfg.image_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=cfg.prompt_embed_dim,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth,
            embedding_dim=cfg.prompt_embed_dim,
            num_heads=cfg.decoder_num_heads,
            mlp_dim=cfg.decoder_mlp_dim,
        ),
        num_multimask_outputs=cfg.num_multimask_outputs,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return prompt_encoder, mask_decoder
