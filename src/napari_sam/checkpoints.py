"""Checkpoint files: download once (pooch, hash checked), read safely, explain mismatches.

Every read is ``torch.load(..., weights_only=True)``: a checkpoint can hold tensors, never code.
Besides tensors and containers, only the few plain data types of :data:`SAFE_GLOBALS` (numpy
scalars / arrays / dtypes, ``pathlib`` paths — what torch_em's training checkpoints may carry
beside the weights) are accepted; a file that needs any other Python object is refused with
a message naming it, and nothing from it is run.
Nothing in the weights cache is ever deleted unless this program downloaded it: a file there
with another hash is kept (offline) or moved aside to ``<name>.sha256-<hash>`` (online).

Formats read: SAM 1 / MobileSAM / micro-sam flat state_dicts, SAM 2 ``{"model": ...}``, and
torch_em's (micro-sam's) ``{"model_state": {"sam.<key>": ...}, "decoder_state": ..., ...}``:
the ``sam.`` prefix is stripped and the decoder's tensors are kept (:class:`Checkpoint`).
:func:`describe` tells SAM 1 / MobileSAM / SAM 2 / EdgeTAM / micro-sam decoder files apart by
their key names; an EdgeTAM file and a SAM 2 file are never loaded into each other
(:func:`refuse_other_family`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def _xxh128():
    try:
        import xxhash
    except ImportError as err:
        raise CheckpointError(
            "micro-sam publishes xxh128 digests; checking them needs the 'xxhash' package "
            "(pip install xxhash)"
        ) from err
    return xxhash.xxh128()


def hash_of(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file: ``"sha256"`` or ``"xxh128"`` (micro-sam's; needs ``xxhash``)."""
    if algorithm == "sha256":
        return sha256_of(path, chunk)
    if algorithm != "xxh128":
        raise ValueError(f"unknown hash {algorithm!r}: 'sha256' or 'xxh128'")
    h = _xxh128()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(info, path: str | Path | None = None) -> bool:
    """Whether the file (default: ``info.path``) has the registry's digest (SHA-256 or xxh128)."""
    algorithm, digest = info.known_hash.split(":", 1)
    return hash_of(path or info.path, algorithm) == digest


def offline() -> bool:
    """``NAPARI_SAM_OFFLINE=1`` forbids any download attempt."""
    return os.environ.get("NAPARI_SAM_OFFLINE", "").lower() in ("1", "true", "yes")


def _move_aside(path: Path, digest: str, algorithm: str = "sha256") -> Path:
    """Rename ``path`` to a free ``<name>.<algorithm>-<digest[:12]>[-N]`` beside it; the new path."""
    target = path.with_name(f"{path.name}.{algorithm}-{digest[:12]}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{algorithm}-{digest[:12]}-{n}")
    path.rename(target)
    return target


def fetch(info, progressbar: bool = False) -> Path:
    """The verified cached file of ``info``; downloaded (with ``pooch``) if absent.

    A file at the cache path whose hash differs (truncated, another version, the user's
    own) is never deleted: offline it stays where it is and the error says so; online it is
    moved aside to ``<name>.sha256-<its hash>`` (a warning names both paths) and the official
    file is downloaded. A download whose hash is wrong is not kept (pooch writes to a
    temporary file) and is reported with its URL and cache path. The hash is the registry's
    (``info.known_hash``): SHA-256 for Meta's files, xxh128 for micro-sam's.
    """
    path = info.path
    if getattr(info, "bundled", False):  # inside the package: nothing to download
        if path.is_file() and sha256_of(path) == info.sha256:
            return path
        raise CheckpointError(f"the bundled {info.name} weights are missing or damaged ({path}); reinstall napari-sam")
    return _fetch_file(info.name, path, info.url, info.known_hash, progressbar)


def fetch_decoder(info, progressbar: bool = False) -> Path | None:
    """micro-sam's instance-segmentation decoder file of ``info`` (verified, downloaded once),
    or None for a model without one."""
    if not getattr(info, "decoder_url", ""):
        return None
    return _fetch_file(f"{info.name} decoder", info.decoder_path, info.decoder_url,
                       f"xxh128:{info.decoder_xxh128}", progressbar)


def _fetch_file(name: str, path: Path, url: str, known_hash: str, progressbar: bool) -> Path:
    algorithm, expected = known_hash.split(":", 1)
    label = "SHA-256" if algorithm == "sha256" else algorithm
    by_hand = (f"Download {url} on a machine with internet access and put it at {path} "
               f"(or pass checkpoint=<path to the file>).")
    kept = ""
    if path.is_file():
        digest = hash_of(path, algorithm)
        if digest == expected:
            return path
        differs = (f"{path} is not the official {name} file: its {label} differs "
                   f"({digest[:12]}... instead of {expected[:12]}...)")
        if offline():
            raise CheckpointError(
                f"{differs}. It was kept, not loaded, and downloads are off (NAPARI_SAM_OFFLINE). "
                f"To use it as it is, load it with checkpoint='{path}'; for the official weights "
                f"download {url} on a machine with internet access and put it in its place."
            )
        aside = _move_aside(path, digest, algorithm)
        kept = f" Your earlier file is kept at {aside}."
        warnings.warn(f"{differs}; it was moved to {aside} (not deleted) and the official file is "
                      f"downloaded again", UserWarning, stacklevel=3)
    if offline():
        raise CheckpointError(f"{name} is not cached and downloads are off (NAPARI_SAM_OFFLINE). {by_hand}")
    if algorithm == "xxh128":
        _xxh128()  # pooch needs xxhash for these digests: say so before downloading
    import pooch
    import requests

    path.parent.mkdir(parents=True, exist_ok=True)
    # nothing is at ``path`` now (absent, or moved aside above): whatever is there after a
    # failed download is this program's own partial file, and only that is removed
    try:
        pooch.retrieve(url, known_hash=known_hash, fname=path.name, path=path.parent, progressbar=progressbar)
    except ValueError as err:  # pooch's hash mismatch; it does not keep the bad file
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"the download of {url} is corrupt or truncated ({label} mismatch); the bad file "
            f"was removed from {path}. Try again, or: {by_hand}{kept}"
        ) from err
    except (requests.exceptions.RequestException, OSError) as err:
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not download {url} ({type(err).__name__}). No network? {by_hand}{kept}"
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


def _safe_globals() -> list:
    """Plain data types a checkpoint may hold besides tensors (torch_em's training checkpoints
    carry numbers and paths from numpy / pathlib in their metadata). Building any of these runs
    no code from the file. Everything else is refused."""
    import numpy as np

    allowed = [np.ndarray, np.dtype, pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath,
               pathlib.WindowsPath, pathlib.Path]
    allowed += [t for t in vars(np.dtypes).values() if isinstance(t, type) and issubclass(t, np.dtype)]
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and 2 pickles
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    return allowed


#: The non-tensor globals a checkpoint may need (:func:`_safe_globals`), named for messages.
SAFE_GLOBALS = ("numpy scalars, arrays and dtypes", "pathlib paths")


@dataclass
class Checkpoint:
    """What a checkpoint file holds for the model: its tensors (``state_dict``, keys as the
    model names them), micro-sam's instance-segmentation ``decoder_state`` if the file has one,
    and ``format``: ``"state_dict"`` (flat), ``"sam2"`` (``{"model": ...}``) or ``"torch_em"``."""

    state_dict: dict[str, torch.Tensor]
    decoder_state: dict[str, torch.Tensor] | None = None
    format: str = "state_dict"
    extra: list[str] = field(default_factory=list)  # other top-level entries (ignored)


def _load_tensors(path: Path):
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = "Unsupported global" in str(err)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint of tensors ({_reason(err)})."
            f"{' Refused, not loaded.' if refused else ' Truncated download?'} Only checkpoints of "
            f"tensors (and plain {', '.join(SAFE_GLOBALS)}) load: code inside a file is never run."
        ) from err


def _tensors_only(path: Path, obj, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds no state_dict of tensors{what} (found {type(obj).__name__})")
    if not obj:
        raise CheckpointError(f"{path} holds no tensors{what} (an empty state_dict)")
    odd = next((k for k, v in obj.items() if not torch.is_tensor(v)), None)
    if odd is not None:
        raise CheckpointError(f"{path} holds no state_dict of tensors{what}: {odd!r} is a {type(obj[odd]).__name__}")
    return dict(obj)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The tensors of a checkpoint in any of the formats above (module docstring).

    A missing path is a ``FileNotFoundError``; a folder, an empty or unreadable file, a file
    holding anything but tensors and the plain data types of :data:`SAFE_GLOBALS` (code
    included: it is never run) a :class:`CheckpointError` naming the path.
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
    obj = _load_tensors(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model_state"), Mapping):
        sd = {k.removeprefix("sam."): v for k, v in obj["model_state"].items()}
        sd = _tensors_only(path, sd, " in its 'model_state'")
        decoder = obj.get("decoder_state")
        if decoder is not None:
            decoder = _tensors_only(path, decoder, " in its 'decoder_state'")
        extra = [str(k) for k in obj if k not in ("model_state", "decoder_state")]
        return Checkpoint(sd, decoder, "torch_em", extra)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        return Checkpoint(_tensors_only(path, obj["model"], ""), None, "sam2")
    return Checkpoint(_tensors_only(path, obj, ""), None, "state_dict")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint (:func:`read_checkpoint`; a decoder is left out)."""
    return read_checkpoint(path).state_dict


_HIERA_VARIANTS = {96: {12: "tiny", 16: "small"}, 112: {24: "base_plus"}, 144: {48: "large"}}
_VIT_VARIANTS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _edgetam_parts(sd: Mapping) -> list[str]:
    """EdgeTAM's own parts found in ``sd``: its RepViT trunk (timm's ``trunk.body.*``), its
    spatial memory perceiver. SAM 2 (Hiera) files have neither."""
    parts = [("RepViT trunk", "image_encoder.trunk.body."), ("spatial perceiver", "spatial_perceiver.")]
    return [what for what, prefix in parts if any(k.startswith(prefix) for k in sd)]


def family_of(sd: Mapping) -> str | None:
    """``"edgetam"``, ``"sam2"`` (Hiera), ``"sam1"`` (ViT or TinyViT), ``"decoder"`` (micro-sam's
    decoder alone) or None (not recognised)."""
    looks = describe(sd)
    for prefix, family in (("EdgeTAM", "edgetam"), ("SAM 2", "sam2"), ("SAM 1", "sam1"), ("MobileSAM", "sam1"),
                           ("micro-sam's instance", "decoder")):
        if looks.startswith(prefix):
            return family
    return None


def describe(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state_dict looks like, in a few words (for error messages)."""
    edgetam = _edgetam_parts(sd)
    if edgetam:
        return f"EdgeTAM ({', '.join(edgetam)})"
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
    if "image_encoder.layers.0.blocks.0.conv1.c.weight" in sd:
        return "MobileSAM vit_t (TinyViT encoder)"
    if is_decoder_state(sd):
        return "micro-sam's instance-segmentation decoder alone (a *_decoder.pt file, no image encoder)"
    keys = list(sd)[:3]
    return f"not a SAM checkpoint ({len(sd)} tensors; first keys {keys})"


#: Keys every micro-sam instance-segmentation (UNETR) decoder has.
DECODER_KEYS = ("base.block.1.weight", "out_conv.weight", "decoder.blocks.0.block.1.weight")


def is_decoder_state(sd: Mapping) -> bool:
    return all(k in sd for k in DECODER_KEYS) and not any(k.startswith("image_encoder.") for k in sd)


def check_decoder(decoder: Mapping[str, torch.Tensor], embed_chans: int, name: str, source: str) -> dict:
    """micro-sam's decoder tensors, checked against the encoder they are to run on.

    The decoder reads the image embedding (``embed_chans`` channels, 256 for every SAM 1
    encoder) through ``base`` and ``deconv1``: a decoder made for another width is refused
    with both widths named. (micro-sam's decoders have the same shapes for vit_t, vit_b,
    vit_l and vit_h, so a decoder of another model of the same layout cannot be told apart
    by its shapes; the registry's hashes tell the published files apart.)
    """
    decoder = {k: v for k, v in decoder.items() if not k.startswith("encoder.")}
    missing = [k for k in DECODER_KEYS if k not in decoder]
    if missing:
        raise CheckpointError(f"{source}: its decoder_state is not micro-sam's instance-segmentation "
                              f"decoder (missing {_short(missing)})")
    width = decoder["base.block.1.weight"].shape[1]
    if width != embed_chans:
        raise CheckpointError(
            f"{source}: its decoder reads {width}-channel image embeddings, but the encoder of "
            f"{name!r} gives {embed_chans}: the decoder belongs to another encoder."
        )
    return decoder


def _short(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _name_for(looks: str) -> str:
    """The registry name(s) to load a file that looks like ``looks`` (:func:`describe`) with,
    quoted, or "" where none fits."""
    m = re.match(r"SAM (2\.[01]) hiera_(\w+)", looks)
    if m:
        return f"'{'sam2' if m[1] == '2.0' else 'sam2.1'}_hiera_{m[2]}'"
    if looks.startswith("SAM 1 vit_"):
        v = looks.split()[2]
        return f"'sam_{v}' (or a micro-sam {v} name such as '{v}_lm')"
    if looks.startswith("MobileSAM vit_t"):
        return "'vit_t' (or 'vit_t_lm', 'vit_t_em_organelles')"
    return "'edgetam'" if looks.startswith("EdgeTAM") else ""


def refuse_other_family(sd: Mapping[str, torch.Tensor], name: str, edgetam: bool, source: str) -> None:
    """Refuse, before any model is built, an EdgeTAM file for any other model (``edgetam``
    False) or a file of another SAM for the EdgeTAM model (``edgetam`` True), saying what the
    file is and which name loads it. (EdgeTAM and SAM 2 share most key names and the family
    ``"sam2"``; a key-by-key mismatch would bury that.) Unrecognised files pass on to
    :func:`load_into`, which lists the keys that differ."""
    family = family_of(sd)
    if family is None or (family == "edgetam") == edgetam:
        return
    looks = describe(sd)
    if family == "edgetam":
        what = f"an EdgeTAM checkpoint {looks.removeprefix('EdgeTAM ')}"
    elif family == "decoder":
        what = f"{looks} — not a model"
    else:
        kind, _, detail = looks.partition(" (")
        trunk = " (Hiera trunk)" if family == "sam2" else ""
        what = f"a {kind} checkpoint{trunk}" if not detail else f"a {kind} ({detail} checkpoint"
    use = _name_for(looks)
    then = f"; load it as {use}" if use else "; pass the model file as checkpoint" if family == "decoder" else ""
    raise CheckpointError(f"{source} does not fit model {name!r}: this file is {what}{then}.")


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
        use = _name_for(looks)
        if use:
            hint = f" Use load_model({use}, checkpoint=...)."
        elif looks.startswith("micro-sam's instance"):
            hint = " Pass the model file (e.g. vit_b.pt, not vit_b_decoder.pt) as checkpoint."
        else:
            hint = ""
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
