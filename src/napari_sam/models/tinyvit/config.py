"""Sizes of MobileSAM (``vit_t``): the TinyViT-5M encoder and SAM 1's own prompt / mask heads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyViTConfig:
    """Defaults are MobileSAM's ``build_sam_vit_t`` (micro-sam's ``vit_t``, ``vit_t_lm``, ...).

    ``num_heads[0]`` and ``window_sizes[0]`` belong to the convolutional first stage and are
    unused, as in MobileSAM. ``last_merge_stride`` 1: the last merge keeps the grid, so the
    embedding is 1/16 of the input. ``num_classes``: the unused ImageNet head kept in the files.
    """

    image_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    last_merge_stride: int = 1
    num_classes: int = 1000
    out_chans: int = 256
    # SAM 1 heads (same fields as Sam1Config)
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    def __post_init__(self) -> None:
        n = len(self.embed_dims)
        for field in ("depths", "num_heads", "window_sizes"):
            value = tuple(getattr(self, field))
            if len(value) != n:
                raise ValueError(f"{field} has {len(value)} entries, embed_dims {n}")
            object.__setattr__(self, field, value)
        object.__setattr__(self, "embed_dims", tuple(self.embed_dims))
        if self.out_chans != self.prompt_embed_dim:
            raise ValueError("out_chans (image embedding width) must equal prompt_embed_dim")
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 16")
        if n < 2 or 2 ** (n - 2) * self.last_merge_stride * 4 != 16:
            raise ValueError("the stages must end at 1/16 of the input (SAM's embedding grid)")

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 at 1024 px)."""
        return self.image_size // 16


VIT_T = TinyViTConfig()
