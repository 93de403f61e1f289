"""The mask decoder's prompt-independent work on one image, kept between prompts.

A click decodes the same image again and again; a third of the decoder's large matrix
products depend on the image alone (the token-major image, the first two-way block's
projections of it, SAM 2's high-resolution skips). :class:`DecoderCache` keeps that work for
one image, for the features it was made for, and gives it back while the same features are
decoded (``model.decode(feats, ..., image_cache=cache)``): the same masks, a faster click.

The cache belongs to its user (an image predictor keeps one per image, the automatic
segmenter one per crop) and holds one image at most: features of another image replace it.
The weights it was made with are checked on every use (:meth:`ImageWork.bind`): after
``load_state_dict`` or an in-place update of the decoder the work is made again.
It recognises its features by identity — the tensor objects themselves (held weakly, so the
cache never keeps them alive), not their memory address: a new tensor on reused memory (a
freed tensor's storage handed out again, a read buffer refilled) is another image. An
in-place change of the same tensors outside inference mode is seen by their version counter;
inference tensors have none, so after changing features in place, :meth:`DecoderCache.clear`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class FirstBlockWork:
    """The first two-way block's image side: ``k`` = image tokens + positions ``(1, hw, C)``,
    the token -> image attention's projected key / value heads (``t2i``) and the image ->
    token attention's projected query heads (``i2t``)."""

    k: torch.Tensor
    t2i: dict[str, torch.Tensor]
    i2t: dict[str, torch.Tensor]


@dataclass
class ImageWork:
    """What the decoder computes from one batch-1 image alone; each part filled on first use.

    ``keys`` / ``key_pe``: the token-major image embedding (plus the no-mask dense prompt
    embedding) and its positional encoding, ``(1, hw, C)``; ``first_block``: see
    :class:`FirstBlockWork`; ``skips``: SAM 2's high-resolution features in block order.
    """

    keys: torch.Tensor | None = None
    key_pe: torch.Tensor | None = None
    first_block: FirstBlockWork | None = None
    skips: tuple[torch.Tensor, torch.Tensor] | None = None
    weights: tuple | None = None  # the weights' places and versions it was made with
    _tensors: tuple = field(default=(), repr=False)  # those weights, collected once

    @property
    def filled(self) -> bool:
        return self.keys is not None

    def bind(self, *modules: nn.Module | torch.Tensor) -> None:
        """Empty the work unless it was made with these modules' weights as they are now:
        ``load_state_dict``, an in-place update and ``.to(...)`` change a weight's version or
        place. The weights are collected on the first call (a module's submodules replaced
        afterwards are not seen: :meth:`DecoderCache.clear` then)."""
        if not self._tensors:
            self._tensors = tuple(weights_of(*modules))
        key = tuple((t.data_ptr(), _version(t)) for t in self._tensors)
        if key != self.weights:
            self.keys = self.key_pe = self.first_block = self.skips = None
            self.weights = key


def weights_of(*modules: nn.Module | torch.Tensor) -> list[torch.Tensor]:
    """Every parameter and buffer of ``modules`` (tensors given as themselves)."""
    tensors = []
    for m in modules:
        tensors.extend([m] if torch.is_tensor(m) else [*m.parameters(), *m.buffers()])
    return tensors


def _version(t: torch.Tensor) -> int | None:
    return None if t.is_inference() else t._version


@dataclass(frozen=True)
class _Owner:
    """Which features (and which decoder) an :class:`ImageWork` was made for."""

    decoder: weakref.ref
    tensors: tuple[tuple[str, weakref.ref, int | None], ...] = field(default=())

    @classmethod
    def of(cls, feats: Mapping[str, torch.Tensor], decoder: nn.Module) -> _Owner:
        items = tuple((k, weakref.ref(v), _version(v)) for k, v in sorted(feats.items()) if torch.is_tensor(v))
        return cls(weakref.ref(decoder), items)

    def matches(self, feats: Mapping[str, torch.Tensor], decoder: nn.Module) -> bool:
        if self.decoder() is not decoder:
            return False
        tensors = [(k, v) for k, v in sorted(feats.items()) if torch.is_tensor(v)]
        if len(tensors) != len(self.tensors):
            return False
        return all(
            name == k and ref() is v and version == _version(v)
            for (name, ref, version), (k, v) in zip(self.tensors, tensors)
        )


class DecoderCache:
    """The decoder's work on one image (see the module docstring). Bounded: one image."""

    def __init__(self) -> None:
        self._owner: _Owner | None = None
        self._work: ImageWork | None = None

    def work_for(self, feats: Mapping[str, torch.Tensor], decoder: nn.Module,
                 mask_input: torch.Tensor | None = None) -> ImageWork | None:
        """The :class:`ImageWork` of ``feats`` for ``decoder`` (a fresh one for other
        features), or None where it must not be used: with a mask prompt (the dense
        embedding then depends on the prompt), with gradients on (training), or for a batch
        of images."""
        if mask_input is not None or torch.is_grad_enabled() or feats["image_embed"].shape[0] != 1:
            return None
        if self._owner is None or not self._owner.matches(feats, decoder):
            self._owner = _Owner.of(feats, decoder)
            self._work = ImageWork()
        return self._work

    @property
    def filled(self) -> bool:
        """Whether it holds an image's work."""
        return self._work is not None and self._work.filled

    def clear(self) -> None:
        self._owner = self._work = None


#: Where a plain dict passed as ``image_cache`` keeps its :class:`DecoderCache`.
LEGACY_KEY = "decoder_cache"


def image_work(cache: DecoderCache | dict | None, feats: Mapping[str, torch.Tensor], decoder: nn.Module,
               mask_input: torch.Tensor | None = None) -> ImageWork | None:
    """What ``model.decode(..., image_cache=cache)`` hands the decoder.

    ``cache``: a :class:`DecoderCache`; None (no caching); or, for callers written before
    it, a plain dict kept per image, which then holds a :class:`DecoderCache` under
    :data:`LEGACY_KEY` (the same rules, the same identity check).
    """
    if cache is None:
        return None
    if isinstance(cache, dict):
        if mask_input is not None or torch.is_grad_enabled():
            return None
        cache = cache.setdefault(LEGACY_KEY, DecoderCache())
    if not isinstance(cache, DecoderCache):
        raise TypeError(f"image_cache must be a DecoderCache (or None), not {type(cache).__name__}")
    return cache.work_for(feats, decoder, mask_input)
