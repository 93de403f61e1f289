"""Two-way transformer of the mask decoder (SAM 1 and SAM 2).

Prompt tokens and image tokens attend to each other in turn. Every attention calls
:func:`napari_sam.models.common.attention`.

Batch broadcasting: the image side may have batch 1 while the tokens have batch P (P prompt
sets against one image). The image embedding is then never copied P times: the first
cross-attentions broadcast it, and it becomes per-prompt only where it really differs (after
the first image-to-token update).

``mlp_style`` picks the checkpoint naming of the per-layer MLP: ``"sam1"`` -> ``mlp.lin1`` /
``mlp.lin2`` (segment-anything), ``"sam2"`` -> ``mlp.layers.0`` / ``mlp.layers.1`` (sam2).
The maths is the same.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common import MLP, MLPBlock, attention
from . import absorbed
from .image_cache import FirstBlockWork, ImageWork


def _broadcast_batch(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Expand (view, no copy) batch-1 tensors to the largest leading batch among them."""
    batch = max(t.shape[0] for t in tensors)
    return [t.expand(batch, *t.shape[1:]) if t.shape[0] != batch else t for t in tensors]


class Attention(nn.Module):
    """Multi-head attention with q/k/v/out projections; ``downsample_rate`` narrows the inner width."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the inner width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def project(self, which: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` through ``{which}_proj`` (``which`` in q, k, v), split into heads."""
        return self._heads(getattr(self, which + "_proj")(x))

    def _absorbed(self, q, k, v, pre: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The same attention with the long side's projections folded into the few tokens
        of the other side (:mod:`.absorbed`), where that is fewer multiply-adds; else None."""
        if self.kv_in_dim != self.embedding_dim or not absorbed.usable(k, v, pre.get("q", q)):
            return None
        heads, inner = self.num_heads, self.internal_dim
        if not pre and absorbed.few_queries_pays(heads, q.shape[1], q.shape[0], k.shape[1], k.shape[0], inner):
            return absorbed.few_queries(self, q, k, v)
        if set(pre) <= {"q"}:
            nq, bq = (pre["q"].shape[2], pre["q"].shape[0]) if pre else (q.shape[1], q.shape[0])
            if absorbed.few_keys_pays(heads, k.shape[1], k.shape[0], nq, bq, inner, bool(pre)):
                return absorbed.few_keys(self, q, k, v, pre.get("q"))
        return None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                projected: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``projected`` may hold already projected heads for any of ``q``, ``k``, ``v``
        (the input of that name is then not used). Under inference the cross attentions
        between a few tokens and many image tokens take the folded order of
        :mod:`.absorbed` (the same numbers up to float rounding)."""
        pre = projected or {}
        fast = self._absorbed(q, k, v, pre)
        if fast is not None:
            return fast
        q, k, v = _broadcast_batch(*(pre[n] if n in pre else self.project(n, x) for n, x in zip("qkv", (q, k, v))))
        out = attention(q, k, v)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens -> image, token MLP, image -> tokens (each with a norm)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        mlp_style: str = "sam1",
    ) -> None:
        super().__init__()
        self.skip_first_layer_pe = skip_first_layer_pe
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        if mlp_style == "sam1":
            self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        elif mlp_style == "sam2":
            self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=activation())
        else:
            raise ValueError(f"mlp_style must be 'sam1' or 'sam2', not {mlp_style!r}")
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        image_work: ImageWork | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_work``: see :meth:`TwoWayTransformer.forward` (first block only)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        if image_work is None:
            k, t2i, i2t = keys + key_pe, None, None
        else:
            if image_work.first_block is None:  # prompt-independent: the image side entering the block
                k = keys + key_pe
                image_work.first_block = FirstBlockWork(
                    k,
                    t2i={"k": self.cross_attn_token_to_image.project("k", k),
                         "v": self.cross_attn_token_to_image.project("v", keys)},
                    i2t={"q": self.cross_attn_image_to_token.project("q", k)},
                )
            work = image_work.first_block
            k, t2i, i2t = work.k, work.t2i, work.i2t
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys, t2i))
        queries = self.norm3(queries + self.mlp(queries))

        update = self.cross_attn_image_to_token(k, queries + query_pe, queries, i2t)
        keys = self.norm4(keys + update)  # batch P from here on, even if keys had batch 1
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks, then a final token -> image attention and norm."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        mlp_style: str = "sam1",
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                activation,
                attention_downsample_rate,
                skip_first_layer_pe=i == 0,
                mlp_style=mlp_style,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        image_work: ImageWork | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B|1, C, h, w)`` image, ``(B|1, C, h, w)`` its encoding, ``(B, N, C)`` tokens.

        -> tokens ``(B, N, C)`` and image tokens ``(B, h*w, C)``.

        ``image_work``: kept by the caller for one batch-1 ``image_embedding`` (with its dense
        prompt embedding) and ``image_pe``, under inference (see
        :class:`~.image_cache.DecoderCache`). The first call fills it
        with everything that does not depend on the prompts — the token-major image, and the
        first block's key / value projections (tokens -> image) and query projection
        (image -> tokens) — and later calls reuse it (``image_embedding`` is then not read).
        The results are the same; a click costs about a third fewer large matrix products.
        """
        if image_work is not None and image_work.filled:
            keys, key_pe = image_work.keys, image_work.key_pe
        else:
            # token-major and contiguous once: every later add / norm / projection is then a
            # dense pass instead of a strided one
            keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
            key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
            if image_work is not None:
                if keys.shape[0] != 1:
                    raise ValueError("image_work needs a batch-1 image embedding")
                image_work.keys, image_work.key_pe = keys, key_pe
        queries = point_embedding
        # the first block's image side is always projected the way the cache keeps it (a
        # throwaway work without a cache), so cached and uncached decodes are the same sums
        first = image_work if image_work is not None else ImageWork()
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, point_embedding, key_pe, first if i == 0 else None)
        attn_out = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn_out)
        if keys.shape[0] != queries.shape[0]:  # depth 0 with a batch-1 image
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
