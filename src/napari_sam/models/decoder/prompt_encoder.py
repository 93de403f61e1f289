"""Prompt encoder of SAM 1 and SAM 2: points, boxes and a mask -> decoder tokens.

Parameter names follow the official checkpoints (``prompt_encoder.*`` in SAM 1,
``sam_prompt_encoder.*`` in SAM 2; the two are the same structure).

Point labels: 1 foreground, 0 background, -1 padding ("not a point"), 2 / 3 top-left /
bottom-right box corner (SAM 2 passes boxes this way; SAM 1 passes them as ``boxes``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..common import LayerNorm2d


class RandomFourierPositions(nn.Module):
    """Positions in [0, 1]^2 -> ``[sin(2 pi f), cos(2 pi f)]`` with ``f = (2 p - 1) @ G``.

    ``G`` is the fixed random ``(2, num_feats)`` buffer ``positional_encoding_gaussian_matrix``
    (saved in the checkpoints).
    """

    def __init__(self, num_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_feats))

    def encode(self, unit_xy: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` (x, y) in [0, 1] -> ``(..., 2 * num_feats)``."""
        g = self.positional_encoding_gaussian_matrix
        freqs = (2 * unit_xy.to(g.dtype) - 1) @ g
        freqs = freqs * (2 * math.pi)
        return torch.cat([freqs.sin(), freqs.cos()], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Encoding of every cell centre of a ``height x width`` grid -> ``(C, height, width)``."""
        g = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(height, device=g.device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=g.device, dtype=torch.float32) + 0.5) / width
        xy = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1)
        return self.encode(xy).permute(2, 0, 1)

    def points(self, xy: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Pixel coordinates ``(..., 2)`` (x, y) in an image of ``image_hw`` -> ``(..., C)``."""
        h, w = image_hw
        unit = xy.float() / torch.tensor([w, h], dtype=torch.float32, device=xy.device)
        return self.encode(unit)


class PromptEncoder(nn.Module):
    """Sparse (points, box corners) and dense (mask) prompt embeddings."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = RandomFourierPositions(embed_dim // 2)
        # 0 negative point, 1 positive point, 2 box top-left, 3 box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, h, w)``.

        Without autograd (inference) the grid is computed once and reused until the
        Fourier matrix changes (load_state_dict, .to(...)): it depends on nothing else.
        """
        if torch.is_grad_enabled():
            return self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0)
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (g.data_ptr(), g._version, g.device, g.dtype)
        cached = getattr(self, "_dense_pe_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0))
            self._dense_pe_cache = cached
        return cached[1]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``(B, N, 2)`` pixel coords + ``(B, N)`` labels -> ``(B, N [+1], C)``.

        Coordinates are shifted to pixel centres (+0.5). With ``pad`` a not-a-point token is
        appended (the official models do this whenever no box is given).
        """
        coords = coords + 0.5
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        pe = self.pe_layer.points(coords, self.input_image_size)
        labels = labels.unsqueeze(-1)
        out = torch.where(labels == -1, self.not_a_point_embed.weight, pe)
        for value, table in enumerate(self.point_embeddings):
            out = torch.where(labels == value, pe + table.weight, out)
        return out

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``(B, 4)`` x0 y0 x1 y1 pixel boxes -> ``(B, 2, C)`` corner tokens."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.points(corners, self.input_image_size)
        corner_ids = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return pe + corner_ids

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 4h, 4w)`` mask logits -> ``(B, C, h, w)``."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> sparse ``(B, N, C)`` and dense ``(B, C, h, w)`` embeddings.

        Without a mask the dense embedding is ``no_mask_embed`` expanded (a view, no copy).
        ``B`` comes from the first prompt given (points, then boxes, then masks), else 1.
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        parts = [weight.new_empty(bs, 0, self.embed_dim)]
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = weight.view(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense
