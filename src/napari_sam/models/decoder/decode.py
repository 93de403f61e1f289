"""Prompts -> masks: the prompt encoder and the mask decoder run together (SAM 1 and SAM 2)."""

from __future__ import annotations

import torch

from .image_cache import ImageWork
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder


def decode_prompts(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    image_embed: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask: bool,
    *,
    batch: int | None = None,
    repeat_image: bool = True,
    high_res: list[torch.Tensor] | None = None,
    image_work: ImageWork | None = None,
    weights: tuple[torch.Tensor, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode the prompts, decode them against ``image_embed`` ``(1 or B, C, h, w)``.

    ``points``: ``(coords (B, N, 2), labels (B, N))`` in model-input pixels; ``boxes``
    ``(B, 4)``; ``mask_input`` ``(B, 1, 4h, 4w)`` logits. ``batch``: the number of prompt
    sets, when prompts of batch 1 are shared by all of them. Returns what
    :meth:`MaskDecoder.forward` returns: masks, IoU, the object-pointer tokens, object scores.

    ``image_work``: the decoder's kept work on this image (see :class:`~.image_cache.DecoderCache`);
    it is emptied when the prompt encoder's or mask decoder's weights, or ``weights`` (other
    tensors already folded into ``image_embed``, such as SAM 2's ``no_mem_embed``), changed.
    """
    if image_work is not None:  # made with other weights (or none yet): made again
        image_work.bind(prompt_encoder, mask_decoder, *weights)
    sparse, dense = prompt_encoder(points, boxes, mask_input)
    if batch is not None and sparse.shape[0] != batch:
        sparse = sparse.expand(batch, *sparse.shape[1:])
    return mask_decoder(
        image_embeddings=image_embed,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=repeat_image,
        high_res_features=high_res,
        image_work=image_work,
    )
