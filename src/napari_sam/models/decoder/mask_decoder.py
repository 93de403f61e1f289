"""The mask decoder of SAM 1 and SAM 2 (one class, the SAM 2 extras switched by arguments).

With every extra off its parameters are SAM 1's ``mask_decoder.*``; with
``use_high_res_features`` / ``pred_obj_scores`` / ``pred_obj_scores_mlp`` on they are SAM 2's
``sam_mask_decoder.*`` (``conv_s0``, ``conv_s1``, ``obj_score_token``, ``pred_obj_score_head``).

Output tokens, in order: [object-score token (SAM 2 only)], IoU token, ``1 + num_multimask_outputs``
mask tokens, then the prompt tokens. Mask token 0 is the single-mask output, 1.. the
multimask outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common import MLP, LayerNorm2d
from .image_cache import ImageWork


def _one_if_expanded(x: torch.Tensor) -> torch.Tensor:
    return x[:1] if x.shape[0] > 1 and x.stride(0) == 0 else x


def _deconv2x2_rows(rows: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """A kernel-2 stride-2 ``ConvTranspose2d`` on channels-last rows ``(N, C_in)``.

    Each input pixel maps to its own 2x2 output block: -> ``(N * 4, C_out)``, the 4 rows of
    every input row in (di, dj) order: out[n * 4 + 2 * di + dj] = x[n] @ W[:, :, di, dj] + b.
    """
    cin, cout = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(cin, 4 * cout)  # columns (di, dj, co)
    return torch.addmm(conv.bias.repeat(4), rows, weight).view(-1, cout)


def _to_blocks(x: torch.Tensor, levels: int) -> torch.Tensor:
    """``(B, C, h * 2**levels, w * 2**levels)`` -> rows ``(B, h * w * 4**levels, C)`` in block
    order: pixel (i, j) of the coarse grid, then (di, dj) of each finer level."""
    b, c, hh, ww = x.shape
    h, w = hh >> levels, ww >> levels
    if levels == 1:
        x = x.view(b, c, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1)
    else:
        x = x.view(b, c, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
    return x.reshape(b, -1, c)


def _from_blocks(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Rows ``(B, h * w * 16, K)`` in two-level block order -> ``(B, K, 4h, 4w)``."""
    b, _, k = m.shape
    return m.view(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, k, 4 * h, 4 * w)


class MaskDecoder(nn.Module):
    """Image embedding + prompt embeddings -> mask logits at 4x the embedding size + IoU."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
    ) -> None:
        super().__init__()
        dim = transformer_dim
        self.transformer_dim = dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            activation(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            # applied by the SAM 2 model to the backbone's stride-4 / stride-8 features
            self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head = MLP(dim, dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(dim, 1)

        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool = True,
        high_res_features: list[torch.Tensor] | None = None,
        image_work: ImageWork | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode B prompt sets.

        ``image_embeddings`` ``(1 or B, C, h, w)``: with ``repeat_image`` a batch-1 image serves
        all B prompt sets (broadcast, not copied); without it the batches must be equal.
        ``dense_prompt_embeddings`` ``(1 or B, C, h, w)``; ``image_pe`` ``(1, C, h, w)``.
        ``high_res_features``: ``[feat_s0, feat_s1]`` already through ``conv_s0`` / ``conv_s1``.

        Returns ``masks (B, K, 4h, 4w)``, ``iou (B, K)`` (K = num_multimask_outputs if
        ``multimask_output`` else 1), ``sam_tokens_out (B, 1 or K, C)`` (the mask tokens used
        as SAM 2 object pointers) and ``object_score_logits (B, 1)`` (10.0 when the decoder has
        no object-score head).

        ``image_work``: prompt-independent work kept between calls on the same image and dense
        embedding (see :class:`~.image_cache.DecoderCache`); only without a mask prompt.
        """
        if not repeat_image and image_embeddings.shape[0] != sparse_prompt_embeddings.shape[0]:
            raise ValueError("repeat_image=False needs one image embedding per prompt set")
        # the masks of the tokens that cannot be returned are not made (token 0 with
        # multimask output; tokens 1.. for a plain single mask); the stability choice needs all
        if multimask_output:
            wanted = slice(1, None)
        elif self.dynamic_multimask_via_stability and not self.training:
            wanted = None
        else:
            wanted = slice(0, 1)
        masks, iou, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features,
            image_work, mask_tokens=wanted,
        )
        if wanted is None:
            masks, iou, sam_tokens_out = self.select_outputs(masks, iou, mask_tokens_out, multimask_output)
        else:
            iou, sam_tokens_out = iou[:, wanted], self.pointer_tokens(mask_tokens_out, multimask_output)
        return masks, iou, sam_tokens_out, object_score_logits

    def select_outputs(
        self, masks: torch.Tensor, iou: torch.Tensor, mask_tokens_out: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs :meth:`forward` returns, from all ``num_mask_tokens`` of
        :meth:`predict_masks`: the multimask tokens 1.., or token 0 (in eval mode with
        ``dynamic_multimask_via_stability``, replaced by the best multimask output where token 0
        is unstable); the mask tokens for SAM 2's object pointer alike (tokens 1.. only with
        ``use_multimask_token_for_obj_ptr``)."""
        if multimask_output:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou = self._stable_single_mask(masks, iou)
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        return masks, iou, self.pointer_tokens(mask_tokens_out, multimask_output)

    def pointer_tokens(self, mask_tokens_out: torch.Tensor, multimask_output: bool) -> torch.Tensor:
        """The mask tokens SAM 2 makes its object pointer of: tokens 1.. with multimask output
        and ``use_multimask_token_for_obj_ptr``, else token 0."""
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            return mask_tokens_out[:, 1:]
        return mask_tokens_out[:, :1]

    def output_tokens(self) -> torch.Tensor:
        """The learned output tokens, ``(T, C)``."""
        tokens = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            tokens.insert(0, self.obj_score_token.weight)
        return torch.cat(tokens, dim=0)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: list[torch.Tensor] | None = None,
        image_work: ImageWork | None = None,
        mask_tokens: slice | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks and IoUs, the mask tokens, object-score logits.

        ``mask_tokens``: make the masks of these mask tokens only (IoUs and tokens stay all)."""
        batch = sparse_prompt_embeddings.shape[0]
        learned = self.output_tokens()
        tokens = torch.cat([learned.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)

        # A batch expanded from one row (stride 0: no mask input, a shared image) is used as
        # batch 1, so the image embedding is not copied once per prompt set.
        if image_work is not None and image_work.filled:
            src = None  # the transformer takes the image side from the cache
        else:
            src = _one_if_expanded(image_embeddings) + _one_if_expanded(dense_prompt_embeddings)
        hs, src = self.transformer(src, image_pe, tokens, image_work)
        first = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, first]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens]

        h, w = image_embeddings.shape[-2:]
        upscaled = self.upscale_blocks(src, high_res_features, image_work)  # (B, 16 h w, C/8)

        indices = range(self.num_mask_tokens)[mask_tokens or slice(None)]
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i]) for i in indices], dim=1)
        # per pixel: its upscaled features . the hypernetwork vector of each mask token; only
        # the K mask channels go back to image order
        masks = _from_blocks(upscaled @ hyper_in.transpose(1, 2), h, w)

        iou = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:  # "object present" (sigmoid(10) ~ 1)
            object_score_logits = iou.new_full((iou.shape[0], 1), 10.0)
        return masks, iou, mask_tokens_out, object_score_logits

    def upscale_blocks(
        self, src: torch.Tensor, high_res_features: list[torch.Tensor] | None = None,
        image_work: ImageWork | None = None,
    ) -> torch.Tensor:
        """``output_upscaling`` on image tokens ``(B, h*w, C)`` -> ``(B, 16*h*w, C/8)``, rows in
        block order (see :func:`_to_blocks`).

        The same maths as the two stride-2 transposed convolutions (+ LayerNorm2d, GELU, and
        SAM 2's high-res skips), as matrix products on channels-last rows: a 2x2 stride-2
        transposed convolution maps each input pixel to its own 2x2 output block, and the norm,
        the activations and the final product with the mask tokens are per pixel, so the rows
        never need to be put back in image order — only the K masks are (several times faster
        on CPU than the convolution kernels and their layout conversions).
        ``image_work``: keeps the skips in block order between calls on one image.
        """
        up1, norm1, act1, up2, act2 = self.output_upscaling
        skips = None
        if self.use_high_res_features and high_res_features is not None:
            if image_work is not None and image_work.skips is not None:
                skips = image_work.skips
            else:
                s0, s1 = (_one_if_expanded(f) for f in high_res_features)
                skips = (_to_blocks(s0, 2), _to_blocks(s1, 1))
                if image_work is not None:
                    image_work.skips = skips
        b, cin = src.shape[0], src.shape[-1]
        x = _deconv2x2_rows(src.reshape(-1, cin), up1).view(b, -1, up1.weight.shape[1])  # (B, 4hw, C/4)
        if skips is not None:
            x = x + skips[1]
        x = act1(torch.nn.functional.layer_norm(x, x.shape[-1:], norm1.weight, norm1.bias, norm1.eps))
        x = _deconv2x2_rows(x.reshape(-1, x.shape[-1]), up2).view(b, -1, up2.weight.shape[1])  # (B, 16hw, C/8)
        if skips is not None:
            x = x + skips[0]
        return act2(x)

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of the masks thresholded at +delta and -delta, per mask (1 for empty masks)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inner = (flat > delta).sum(-1).float()
        outer = (flat > -delta).sum(-1).float()
        return torch.where(outer > 0, inner / outer.clamp_min(1), torch.ones_like(inner))

    def _stable_single_mask(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output, replaced by the best-IoU multimask output where it is unstable."""
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = iou[:, 1:].argmax(dim=-1) + 1
        best_masks, best_iou = masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)
        stable = self.stability_scores(masks[:, :1]) >= self.dynamic_multimask_stability_thresh
        return (
            torch.where(stable[..., None, None], masks[:, :1], best_masks),
            torch.where(stable, iou[:, :1], best_iou),
        )
