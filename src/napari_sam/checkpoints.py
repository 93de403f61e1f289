"""Checkpoint files: download once (pooch, SHA-256 checked), read safely, explain mismatches.

Every read is ``torch.load(..., weights_only=True)``: a checkpoint can hold tensors, never code.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def offline() -> bool:
    """``NAPARI_SAM_OFFLINE=1`` forbids any download attempt."""
    return os.environ.get("NAPARI_SAM_OFFLINE", "").lower() in ("1", "true", "yes")


def _by_hand(info) -> str:
    return (
        f"Download {info.url} on a machine with internet access and put it at {info.path} "
        f"(or pass checkpoint=<path to the file>)."
    )


def fetch(info, progressbar: bool = False) -> Path:
    """The verified cached file of ``info``; downloaded (with ``pooch``) if absent.

    A cached file whose SHA-256 is wrong is removed and fetched again; a download whose
    SHA-256 is wrong is removed and reported with its URL and cache path.
    """
    path = info.path
    if getattr(info, "bundled", False):  # inside the package: nothing to download
        if path.is_file() and sha256_of(path) == info.sha256:
            return path
        raise CheckpointError(f"the bundled {info.name} weights are missing or damaged ({path}); reinstall napari-sam")
    if path.is_file():
        if sha256_of(path) == info.sha256:
            return path
        path.unlink()  # truncated / corrupt: never load it, fetch again
    if offline():
        raise CheckpointError(f"{info.name} is not cached and downloads are off (NAPARI_SAM_OFFLINE). {_by_hand(info)}")
    import pooch
    import requests

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pooch.retrieve(info.url, known_hash=f"sha256:{info.sha256}", fname=path.name,
                       path=path.parent, progressbar=progressbar)
    except ValueError as err:  # pooch's hash mismatch; it does not keep the bad file
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"the download of {info.url} is corrupt or truncated (SHA-256 mismatch); the bad file "
            f"was removed from {path}. Try again, or: {_by_hand(info)}"
        ) from err
    except (requests.exceptions.RequestException, OSError) as err:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"could not download {info.url} ({type(err).__name__}). No network? {_by_hand(info)}") from err
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: SAM 1 flat, SAM 2 ``{"model": state_dict}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint of tensors ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Truncated download? Only plain tensor "
            f"checkpoints load: code inside a file is never run."
        ) from err
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors (found {type(obj).__name__})")
    return dict(obj)


_HIERA_VARIANTS = {96: {12: "tiny", 16: "small"}, 112: {24: "base_plus"}, 144: {48: "large"}}
_VIT_VARIANTS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def describe(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state_dict looks like, in a few words (for error messages)."""
    if "image_encoder.patch_embed.proj.weight" in sd:
        dim = sd["image_encoder.patch_embed.proj.weight"].shape[0]
        depth = len({k.split(".")[2] for k in sd if k.startswith("image_encoder.blocks.")})
        variant = _VIT_VARIANTS.get(dim, f"ViT width {dim}")
        return f"SAM 1 {variant} (ViT width {dim}, {depth} blocks)"
    if "image_encoder.trunk.patch_embed.proj.weight" in sd:
        dim = sd["image_encoder.trunk.patch_embed.proj.weight"].shape[0]
        depth = len({k.split(".")[3] for k in sd if k.startswith("image_encoder.trunk.blocks.")})
        variant = _HIERA_VARIANTS.get(dim, {}).get(depth)
        version = "2.1" if "no_obj_embed_spatial" in sd else "2.0"
        if variant is None:
            return f"SAM {version} (Hiera width {dim}, {depth} blocks)"
        return f"SAM {version} hiera_{variant}"
    keys = list(sd)[:3]
    return f"not a SAM checkpoint ({len(sd)} tensors; first keys {keys})"


def _short(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_into(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], name: str, source: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` with a short message on a mismatch."""
    own = model.state_dict()
    missing = set(own) - set(sd)
    unexpected = set(sd) - set(own)
    wrong = [k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} ({_short(missing)})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} ({_short(unexpected)})")
        if wrong:
            details.append(f"{len(wrong)} with other shapes ({_short(wrong)})")
        looks = describe(sd)
        hint = ""
        m = re.match(r"SAM (2\.[01]) hiera_(\w+)", looks)
        if m:
            hint = f" Use load_model('{'sam2' if m[1] == '2.0' else 'sam2.1'}_hiera_{m[2]}', checkpoint=...)."
        elif looks.startswith("SAM 1 vit_"):
            hint = f" Use load_model('sam_{looks.split()[2]}', checkpoint=...)."
        raise CheckpointError(
            f"{source} does not fit model {name!r}: it looks like {looks}.{hint} "
            f"(keys: {'; '.join(details)})"
        )
    model.load_state_dict(sd, strict=True)
