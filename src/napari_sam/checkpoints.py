"""Checkpoint files: download once (pooch, SHA-256 checked), read safely, explain mismatches.

Every read is ``torch.load(..., weights_only=True)``: a checkpoint can hold tensors, never code.
Nothing in the weights cache is ever deleted unless this program downloaded it: a file there
with another SHA-256 is kept (offline) or moved aside to ``<name>.sha256-<hash>`` (online).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
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


def _move_aside(path: Path, digest: str) -> Path:
    """Rename ``path`` to a free ``<name>.sha256-<digest[:12]>[-N]`` beside it; the new path."""
    target = path.with_name(f"{path.name}.sha256-{digest[:12]}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.sha256-{digest[:12]}-{n}")
    path.rename(target)
    return target


def fetch(info, progressbar: bool = False) -> Path:
    """The verified cached file of ``info``; downloaded (with ``pooch``) if absent.

    A file at the cache path whose SHA-256 differs (truncated, another version, the user's
    own) is never deleted: offline it stays where it is and the error says so; online it is
    moved aside to ``<name>.sha256-<its hash>`` (a warning names both paths) and the official
    file is downloaded. A download whose SHA-256 is wrong is not kept (pooch writes to a
    temporary file) and is reported with its URL and cache path.
    """
    path = info.path
    if getattr(info, "bundled", False):  # inside the package: nothing to download
        if path.is_file() and sha256_of(path) == info.sha256:
            return path
        raise CheckpointError(f"the bundled {info.name} weights are missing or damaged ({path}); reinstall napari-sam")
    kept = ""
    if path.is_file():
        digest = sha256_of(path)
        if digest == info.sha256:
            return path
        differs = (f"{path} is not the official {info.name} file: its SHA-256 differs "
                   f"({digest[:12]}... instead of {info.sha256[:12]}...)")
        if offline():
            raise CheckpointError(
                f"{differs}. It was kept, not loaded, and downloads are off (NAPARI_SAM_OFFLINE). "
                f"To use it as it is, load it with checkpoint='{path}'; for the official weights "
                f"download {info.url} on a machine with internet access and put it in its place."
            )
        aside = _move_aside(path, digest)
        kept = f" Your earlier file is kept at {aside}."
        warnings.warn(f"{differs}; it was moved to {aside} (not deleted) and the official file is "
                      f"downloaded again", UserWarning, stacklevel=2)
    if offline():
        raise CheckpointError(f"{info.name} is not cached and downloads are off (NAPARI_SAM_OFFLINE). {_by_hand(info)}")
    import pooch
    import requests

    path.parent.mkdir(parents=True, exist_ok=True)
    # nothing is at ``path`` now (absent, or moved aside above): whatever is there after a
    # failed download is this program's own partial file, and only that is removed
    try:
        pooch.retrieve(info.url, known_hash=f"sha256:{info.sha256}", fname=path.name,
                       path=path.parent, progressbar=progressbar)
    except ValueError as err:  # pooch's hash mismatch; it does not keep the bad file
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"the download of {info.url} is corrupt or truncated (SHA-256 mismatch); the bad file "
            f"was removed from {path}. Try again, or: {_by_hand(info)}{kept}"
        ) from err
    except (requests.exceptions.RequestException, OSError) as err:
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not download {info.url} ({type(err).__name__}). No network? {_by_hand(info)}{kept}"
        ) from err
    return path


def _reason(err: Exception) -> str:
    """What a loader error says, in one short clause (some have no message at all)."""
    text = str(err)
    if "Weights only load failed" in text:  # torch's advice to load unsafely is not repeated
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if glob:
            return f"it holds the Python object {glob[1]}, not only tensors"
        op = re.search(r"Unsupported operand \S+", text)
        return f"not a pickle of tensors ({op[0] if op else 'refused by the safe loader'})"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(err).__name__}: {line[:200]}" if line else type(err).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: SAM 1 flat, SAM 2 ``{"model": state_dict}``.

    A missing path is a ``FileNotFoundError``; a folder, an empty or unreadable file, a file
    holding anything but tensors (code included: it is never run) a :class:`CheckpointError`
    naming the path.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth"))
        hint = f"; it holds {_short(inside, 3)}: pass one of them" if inside else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is an empty file (0 bytes): an interrupted download or copy? "
                              f"Replace it with the checkpoint file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint of tensors ({_reason(err)}). Truncated "
            f"download? Only plain tensor checkpoints load: code inside a file is never run."
        ) from err
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds no state_dict of tensors (found {type(obj).__name__})")
    if not obj:
        raise CheckpointError(f"{path} holds no tensors (an empty state_dict)")
    odd = next((k for k, v in obj.items() if not torch.is_tensor(v)), None)
    if odd is not None:
        raise CheckpointError(f"{path} holds no state_dict of tensors: {odd!r} is a {type(obj[odd]).__name__}")
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
    """``model.load_state_dict(sd, strict=True)`` with a short message on a mismatch.

    Keys and shapes must match exactly. Floating-point tensors of any precision (float16,
    bfloat16, float32, float64) are converted to the model's dtype; an integer or bool tensor
    where the model holds floating-point weights (a quantised file?) is refused, naming the
    first such key and its dtype — it is never silently cast.
    """
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
    for k, v in sd.items():
        if own[k].is_floating_point() and not v.is_floating_point():
            raise CheckpointError(
                f"{source}: tensor {k!r} is {v.dtype}, but model {name!r} holds floating-point "
                f"weights there ({own[k].dtype}). Integer or bool tensors (a quantised "
                f"checkpoint?) are refused, not converted; save the weights as floating point."
            )
    model.load_state_dict(sd, strict=True)
