"""The model work of one video step, for one object or a batch of objects on one frame.

Each function composes the stateless :class:`~napari_sam.models.sam2.Sam2` building blocks
the way the official ``SAM2Base.track_step`` does, given memories already chosen by
:mod:`~napari_sam.engine.video.memory_bank`. Objects whose memory layouts have the same structure
(same temporal slots, same pointer distances) run in one batch: the frame's features are
shared (batch 1, expanded), only the memories differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ...models.sam2 import clamp_logits
from ..masks.holes import fill_small_holes
from .memory_bank import MemoryLayout
from .memory_store import FrameOutput


def high_res_feats(feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return feats["high_res_s0"], feats["high_res_s1"]


def _expand(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x if x.shape[0] == batch else x.expand(batch, *x.shape[1:])


#: On a CPU, a batch of objects whose memory keys and values exceed this runs slower than
#: several smaller batches (cache-bound; measured at 256 and 512 px, no effect at 1024 px).
CPU_BATCH_BYTES = 32 * 2**20


def memory_shape(model) -> tuple[int, ...]:
    """One object's stored memory of one frame: ``(M, h, w)`` (SAM 2) or ``(tokens, M)``
    (a model whose memories pass a spatial perceiver, EdgeTAM)."""
    shape = getattr(model, "memory_shape", None)
    if shape is None:
        cfg = model.config
        return (cfg.mem_dim, cfg.feat_size, cfg.feat_size)
    return tuple(shape)


def memory_tokens_per_frame(model) -> int:
    """Memory-attention key tokens of one memory frame (``h * w``; EdgeTAM's 512 latents)."""
    n = getattr(model, "memory_tokens_per_frame", None)
    return model.config.feat_size**2 if n is None else int(n)


def auto_batch(model, device) -> int:
    """Most objects per batched forward: unlimited on accelerators, ~32 MiB of keys on CPU."""
    if torch.device(device).type != "cpu":
        return 1 << 30
    cfg = model.config
    tokens = cfg.num_maskmem * memory_tokens_per_frame(model) + cfg.max_obj_ptrs_in_encoder * (cfg.d_model // cfg.mem_dim)
    per_object = 2 * tokens * cfg.d_model * 4
    return max(1, CPU_BATCH_BYTES // per_object)


def projection_bytes(model, batch: int) -> int:
    """Size of one projected memory frame (keys and values of every layer) for ``batch``."""
    cfg = model.config
    p = next(model.parameters())
    return 2 * cfg.memory_attention_layers * memory_tokens_per_frame(model) * cfg.d_model * p.element_size() * batch


def gather_memories(
    layouts: Sequence[MemoryLayout],
    fetch: Callable[[int, int, str], FrameOutput],
    dtype: torch.dtype,
    device,
    model=None,
    cache=None,
    obj_ids: Sequence | None = None,
) -> tuple[list[tuple], list[tuple]]:
    """Stack the memories of objects with structurally equal layouts.

    ``fetch(i, frame, source)`` returns object ``i``'s output. Returns ``(memories,
    pointers)`` in the form :meth:`Sam2.condition_on_memory` takes: ``[(maskmem (B,
    *model.memory_shape) or its projection, None, t_pos)]`` and ``[(obj_ptr (B, C), distance)]``. With a
    :class:`~napari_sam.engine.video.projection_cache.ProjectionCache` (and ``model``,
    ``obj_ids``), memory frames are projected once and reused while the group's working
    set fits the cache budget.
    """
    first = layouts[0]
    use_cache = (
        cache is not None
        and cache.fits(projection_bytes(model, len(layouts)), model.config.num_maskmem + 1)
    )
    memories = []
    for j, (t_pos, _, _) in enumerate(first.spatial):
        key = None
        if use_cache:
            key = (tuple(obj_ids), tuple((lay.spatial[j][1], lay.spatial[j][2]) for lay in layouts))
            pm = cache.get(key)
            if pm is not None:
                memories.append((pm, None, t_pos))
                continue
        mm = torch.stack([fetch(i, lay.spatial[j][1], lay.spatial[j][2]).maskmem for i, lay in enumerate(layouts)])
        mm = mm.to(device=device, dtype=dtype)
        if use_cache:
            pm = model.project_memory(mm)
            cache.put(key, pm)
            memories.append((pm, None, t_pos))
        else:
            memories.append((mm, None, t_pos))
    pointers = []
    for j, (dist, _, _) in enumerate(first.pointers):
        ptr = torch.stack([fetch(i, lay.pointers[j][1], lay.pointers[j][2]).obj_ptr for i, lay in enumerate(layouts)])
        pointers.append((ptr.to(device=device, dtype=dtype), dist))
    return memories, pointers


def _outputs(heads, fill_hole_area: int) -> list[FrameOutput]:
    low = heads.low_res_masks.float()
    if fill_hole_area > 0:
        low = fill_small_holes(low, fill_hole_area)
    return [
        FrameOutput(None, heads.obj_ptr[i].float(), heads.object_score_logits[i, 0].float(), low[i, 0])
        for i in range(low.shape[0])
    ]


def prompt_step(
    model,
    feats: dict[str, torch.Tensor],
    num_frames: int,
    points=None,
    mask: torch.Tensor | None = None,
    memories: tuple[list, list] | None = None,
    prev_logits: torch.Tensor | None = None,
    fill_hole_area: int = 0,
) -> FrameOutput:
    """One object's output on a frame it has prompts on (official ``add_new_*`` step).

    ``points``: a ``PointPrompt``; ``mask``: (1, 1, S, S) 0 / 1; ``memories``: ``None`` for an
    initial conditioning frame, else the gathered (memories, pointers) of a correction;
    ``prev_logits``: (S/4, S/4) logits of the frame's latest earlier output (points only).
    The memory is not encoded here (the official predictor encodes it when propagation starts).
    """
    embed = feats["image_embed"]
    hr = high_res_feats(feats)
    cfg = model.config
    if mask is not None and cfg.use_mask_input_as_output_without_sam:
        heads = model.mask_as_output(embed, hr, mask.to(embed.dtype))
        return _outputs(heads, fill_hole_area)[0]
    if memories is None:
        pix = model.no_memory_features(embed)
    else:
        pix = model.condition_on_memory(embed, memories[0], memories[1], num_frames)
    if mask is not None:
        heads = model.forward_sam_heads(pix, hr, mask_input=mask.to(embed.dtype),
                                        multimask=model.use_multimask(memories is None, 0))
        return _outputs(heads, fill_hole_area)[0]
    mask_input = None
    if prev_logits is not None:
        mask_input = clamp_logits(prev_logits)  # as the official predictor feeds earlier logits back
        mask_input = mask_input.reshape(1, 1, *mask_input.shape[-2:]).to(embed.device, embed.dtype)
    heads = model.forward_sam_heads(
        pix,
        hr,
        point_coords=points.coords.to(embed.device, embed.dtype),
        point_labels=points.labels.to(embed.device),
        mask_input=mask_input,
        multimask=model.use_multimask(memories is None, points.num_points),
    )
    return _outputs(heads, fill_hole_area)[0]


def track_step(
    model,
    feats: dict[str, torch.Tensor],
    num_frames: int,
    memories: tuple[list, list],
    fill_hole_area: int = 0,
    frame_cache=None,
) -> list[FrameOutput]:
    """Track ``B`` objects (one batch of equal memory layouts) on a frame without prompts.

    Memory attention, SAM heads (multimask as the official tracking), memory encoding of
    the unfilled high-resolution mask (sigmoid, not binarised). Returns one complete
    :class:`FrameOutput` per object (bf16 memory features).
    """
    embed = feats["image_embed"]
    hr = high_res_feats(feats)
    mems, ptrs = memories
    first = mems[0][0]
    batch = first.batch if hasattr(first, "batch") else first.shape[0]
    kwargs = {} if frame_cache is None else {"frame_cache": frame_cache}
    pix = model.condition_on_memory(embed, mems, ptrs, num_frames, **kwargs)
    heads = model.forward_sam_heads(pix, hr, multimask=model.use_multimask(False, 0))
    maskmem, _ = model.encode_memory(_expand(embed, batch), heads.high_res_masks,
                                     heads.object_score_logits, False)
    outs = _outputs(heads, fill_hole_area)
    maskmem = maskmem.to(torch.bfloat16)
    for i, out in enumerate(outs):
        out.maskmem = maskmem[i]
    return outs


def encode_prompted(model, feats: dict[str, torch.Tensor], outs: Sequence[FrameOutput]) -> None:
    """Encode the memories of outputs made from prompts (official propagation preflight).

    The mask is the stored low-res logits upsampled to the model input, binarised
    (clicks or mask: "what the user sees"). Sets ``out.maskmem`` (bf16) in place.
    """
    embed = feats["image_embed"]
    size = model.image_size
    low = torch.stack([o.low_res for o in outs])[:, None].to(embed.device, torch.float32)
    high = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    scores = torch.stack([o.score for o in outs]).reshape(-1, 1).to(embed.device, torch.float32)
    maskmem, _ = model.encode_memory(_expand(embed, len(outs)), high.to(embed.dtype), scores.to(embed.dtype), True)
    maskmem = maskmem.to(torch.bfloat16)
    for i, out in enumerate(outs):
        out.maskmem = maskmem[i]


def to_frame_size(low_res: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """(N, L, L) low-res logits -> (N, H, W) float32 (bilinear, as the official predictor)."""
    x = low_res.float()[:, None]
    if tuple(x.shape[-2:]) != tuple(frame_hw):
        x = F.interpolate(x, size=frame_hw, mode="bilinear", align_corners=False)
    return x[:, 0]
