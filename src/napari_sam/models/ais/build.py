"""Build the AIS decoder from micro-sam's ``decoder_state`` (strict: every key, every shape)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .decoder import AisDecoder


def uses_transposed_convs(decoder_state: Mapping[str, torch.Tensor]) -> bool:
    """micro-sam's rule (``get_unetr``): transposed convolutions when a key under
    ``decoder.samplers`` holds ``.block.``; else bilinear upsampling + 1x1 convolution."""
    return any(".block." in k for k in decoder_state if k.startswith("decoder.samplers"))


def build_ais_decoder(decoder_state: Mapping[str, torch.Tensor], device=None) -> AisDecoder:
    """:class:`AisDecoder` with ``decoder_state`` loaded ``strict=True``, in eval mode, float32.

    ``decoder_state``: micro-sam's ``decoder_state`` (what ``load_model`` keeps as
    ``model.ais_decoder_state``); ``encoder.*`` keys (a whole UNETR's state) are ignored. A
    state of another layout is a ValueError naming the keys that differ.
    """
    if not isinstance(decoder_state, Mapping) or not decoder_state:
        raise ValueError("build_ais_decoder needs micro-sam's decoder_state (a dict of tensors), "
                         f"got {type(decoder_state).__name__}")
    state = {k: v for k, v in decoder_state.items() if not k.startswith("encoder.")}
    if "base.block.1.weight" not in state:
        raise ValueError("not micro-sam's AIS decoder state: it has no 'base.block.1.weight' "
                         f"(first keys {sorted(state)[:3]})")
    embed_dim = int(state["base.block.1.weight"].shape[1])
    with torch.device("meta"):
        decoder = AisDecoder(embed_dim, uses_transposed_convs(state))
    own = decoder.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label} {keys[:4]}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise ValueError("the decoder_state does not fit micro-sam's AIS decoder: " + "; ".join(parts))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    decoder.load_state_dict(state, strict=True, assign=True)
    return decoder.to(device or "cpu").eval()
