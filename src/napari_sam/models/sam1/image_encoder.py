"""SAM 1 image encoder: a plain ViT with windowed / global attention and a conv neck.

Parameter names follow the official checkpoints (``image_encoder.*`` keys), so official
weights load with ``strict=True``. Attention goes through :func:`napari_sam.models.common.attention`
with SAM's decomposed relative positions (MViTv2) passed as the additive ``bias``; the
softmax is left to SDPA, which never materialises the attention matrix on CPU.

Differences from the official implementation that keep results the same but save work:
the qkv / output projections run on the un-padded token grid (padding tokens of a window
are zeros after ``norm1``, so their q, k, v are just the projection bias), and the bias is
built once per block from two small einsums and one broadcast add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common import LayerNorm2d, MLPBlock, attention

# Largest relative-position bias (elements) built for several images at once; a global
# block of ViT-B at 1024^2 needs 12 * 4096^2 (800 MB fp32) per image.
_BIAS_LIMIT = 2**26


def relative_position_table(table: torch.Tensor, q_len: int, k_len: int) -> torch.Tensor:
    """Gather a ``(2 L - 1, C)`` relative-position table into ``(q_len, k_len, C)``.

    Entry ``[i, j]`` is the embedding for the offset ``i - j`` (after scaling the shorter
    axis, as in MViTv2). A table trained for another length is resized linearly first.
    """
    span = 2 * max(q_len, k_len) - 1
    if table.shape[0] != span:
        table = F.interpolate(table.t().unsqueeze(0), size=span, mode="linear").squeeze(0).t()
    q_step = max(k_len / q_len, 1.0)
    k_step = max(q_len / k_len, 1.0)
    offsets = (
        torch.arange(q_len, device=table.device)[:, None] * q_step
        - torch.arange(k_len, device=table.device)[None, :] * k_step
        + (k_len - 1) * k_step
    )
    return table[offsets.long()]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, returned channels-last ``(B, H, W, C)``."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a 2-D token grid with decomposed relative positions.

    ``forward`` takes the projected ``qkv`` laid out as ``(B, h, w, 3 * dim)`` (so the caller
    can project before window partitioning) and returns ``(B, h, w, dim)`` *before* ``proj``.
    """

    def __init__(self, dim: int, num_heads: int, grid_size: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))

    def position_bias(self, q: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Additive ``(B, heads, h*w, h*w)`` term: ``q . Rh[dy] + q . Rw[dx]`` (unscaled q)."""
        b, nh, _, c = q.shape
        rh = relative_position_table(self.rel_pos_h, h, h).to(q.dtype)  # (h, h, c)
        rw = relative_position_table(self.rel_pos_w, w, w).to(q.dtype)  # (w, w, c)
        grid = q.reshape(b, nh, h, w, c)
        along_h = torch.einsum("bnyxc,ykc->bnyxk", grid, rh)  # (b, nh, h, w, h)
        along_w = torch.einsum("bnyxc,xkc->bnyxk", grid, rw)  # (b, nh, h, w, w)
        bias = q.new_empty(b, nh, h, w, h, w)  # written once, in the layout SDPA reads
        torch.add(along_h.unsqueeze(-1), along_w.unsqueeze(-2), out=bias)
        return bias.view(b, nh, h * w, h * w)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, h, w, three_dim = qkv.shape
        if b > 1 and self.num_heads * (h * w) ** 2 > _BIAS_LIMIT:
            # global attention over several images: one image at a time bounds the bias memory
            return torch.cat([self(one) for one in qkv.split(1)])
        dim = three_dim // 3
        heads = qkv.view(b, h * w, 3, self.num_heads, dim // self.num_heads)
        # (B, heads, tokens, head_dim) views; SDPA reads the strided layout directly
        q, k, v = (heads.select(2, i).transpose(1, 2) for i in range(3))
        out = attention(q, k, v, bias=self.position_bias(q, h, w), scale=self.scale)
        return out.transpose(1, 2).reshape(b, h, w, dim)


def _pad_to_windows(qkv: torch.Tensor, window: int, fill: torch.Tensor | None) -> torch.Tensor:
    """Pad ``(B, H, W, C)`` up to a multiple of ``window`` with ``fill`` (a (C,) vector or 0)."""
    b, hgt, wid, c = qkv.shape
    ph, pw = -hgt % window, -wid % window
    if ph == 0 and pw == 0:
        return qkv
    out = qkv.new_empty(b, hgt + ph, wid + pw, c)
    out[:, :hgt, :wid] = qkv
    pad_value = 0.0 if fill is None else fill
    out[:, hgt:] = pad_value
    out[:, :hgt, wid:] = pad_value
    return out


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, Hp, Wp, C)`` (multiples of ``window``) -> ``(B * nwin, window, window, C)``."""
    b, hp, wp, c = x.shape
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c)


def from_windows(x: torch.Tensor, window: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`to_windows` -> ``(B, Hp, Wp, C)``."""
    c = x.shape[-1]
    b = x.shape[0] // ((hp // window) * (wp // window))
    x = x.view(b, hp // window, wp // window, window, window, c).transpose(2, 3)
    return x.reshape(b, hp, wp, c)


class EncoderBlock(nn.Module):
    """Pre-norm ViT block; ``window_size`` 0 means global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        grid_size: int,
        qkv_bias: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = RelPosAttention(dim, num_heads, window_size or grid_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.attn.qkv(self.norm1(x))
        win = self.window_size
        if win == 0:
            return self.attn.proj(self.attn(qkv))
        hgt, wid = qkv.shape[1:3]
        # Zero tokens (padding after norm1) project to the qkv bias alone.
        qkv = _pad_to_windows(qkv, win, self.attn.qkv.bias)
        hp, wp = qkv.shape[1:3]
        out = from_windows(self.attn(to_windows(qkv, win)), win, hp, wp)
        return self.attn.proj(out[:, :hgt, :wid])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(x)
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """ViT-B/L/H image encoder of SAM 1: ``(B, 3, S, S)`` -> ``(B, out_chans, S/p, S/p)``."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                window_size=0 if i in global_attn_indexes else window_size,
                grid_size=grid,
                qkv_bias=qkv_bias,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2)).contiguous()
