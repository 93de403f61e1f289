"""Inference-time folding of RepViT's conv + batch-norm pairs, kept behind the official keys.

In eval mode without autograd, a ``conv -> BN`` pair is one conv (weights scaled by
``gamma / sqrt(var + eps)``, bias ``beta - mean * scale``) and the token mixer
``dw3x3 + dw1x1 + identity`` is one depth-wise 3x3 conv. The folded tensors are *not*
parameters or buffers: the module's ``state_dict()`` stays the official checkpoint's
(names, shapes and values), and a :class:`FoldCache` remakes the folded tensors whenever a
source tensor changed (a new ``load_state_dict``, an in-place edit, ``.to(device/dtype)``),
so they are never stale. Folded conv weights are stored channels-last (the trunk runs
channels-last when folded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _state(tensors: Sequence[torch.Tensor]):
    """What identifies the values of ``tensors``: storage, version counter, dtype, device
    (None for inference tensors, which have no version counter: then fold on every call)."""
    try:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    except RuntimeError:
        return None


class FoldCache:
    """Folded tensors of one module and the state of the tensors they were made from."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key = None
        self.value = None

    def get(self, sources: Sequence[torch.Tensor], make: Callable[[], tuple]) -> tuple:
        key = _state(sources)
        if key is None or key != self.key:
            with torch.inference_mode(False), torch.no_grad():
                self.value = make()
            self.key = key
        return self.value


def fold_conv_bn(weight: torch.Tensor, bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight', bias')`` of the conv (no bias) followed by ``bn`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def channels_last(w: torch.Tensor) -> torch.Tensor:
    return w.contiguous(memory_format=torch.channels_last)
