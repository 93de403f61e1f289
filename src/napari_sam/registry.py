"""Model names -> official checkpoint facts (URL, SHA-256, size) and the builder of each.

``list_models()`` says what exists and what is already cached; ``load_model()`` builds the
architecture, finds or downloads the weights (see :mod:`napari_sam.checkpoints`) and loads
them with ``strict=True``.

Sizes: exact where the file's size is published (``sam_vit_b``, ``sam_vit_h``,
``sam2.1_hiera_tiny``, ``edgetam``); for the others an estimate from the official key shapes — the
tensors' bytes plus ~320 bytes per tensor of zip-file overhead, which gives the three known
files to within 0.005 % — marked ``size_exact=False`` and shown as "about N MiB".
``sam_vit_l``'s 1,249,524,607 bytes fit that estimate to 0.0002 % but are published nowhere
we can cite, so it counts as approximate too.

"Cached" is a cheap check, made without reading the file: a file at the cache path with the
expected size (exactly, or within :data:`APPROX_SIZE_TOLERANCE` of an estimate). A truncated
or foreign file is therefore not offered as cached (``cache_state == "other size"``); a file
of the right size is still SHA-256 checked when it loads.

micro-sam's models (``vit_t``, ``vit_b_lm``, ``vit_l_em_organelles``, ...) keep micro-sam's
names, URLs and hashes (micro-sam 1.8.14, ``micro_sam.util.models()``). micro-sam publishes
xxh128 digests, not SHA-256 (``sha256`` is empty there, ``xxh128`` holds the digest; checking
needs the small ``xxhash`` package) and no file sizes: their sizes are the estimate above from
our architecture's key shapes (``size_exact=False``), which assumes a plain state_dict saved
by ``torch.save`` — a file that also holds ``decoder_state`` is larger, and is then shown as
"other size" although it still loads (its hash is what is checked). The instance-segmentation
decoder file (``<name>_decoder.pt``) that micro-sam downloads alongside is listed as
``decoder_url`` / ``decoder_xxh128``; its size is unknown (``None``).

``edgetam`` (Meta's EdgeTAM, Apache-2.0: SAM 2 with a RepViT-M1 trunk and a spatial memory
perceiver; family ``sam2``, SAM 2.0's heads) is the file of the EdgeTAM repository. Meta
publishes its SHA-256 as the Git LFS record of ``checkpoints/edgetam.pt`` (the official
Hugging Face space facebook/EdgeTAM: "SHA256 ed2d4850...80df, size of remote file 56.1 MB");
the exact byte count, 56,116,523, is what other projects measured on download (it matches
the 56.1 MB). Both are checked like the other official files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SAM1_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
BIOIMAGEIO = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
OWNCLOUD = "https://owncloud.gwdg.de/index.php/s/"
EDGETAM_URL = "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt"


#: How far a cached file's size may be from an estimated (``size_exact=False``) size, relative.
APPROX_SIZE_TOLERANCE = 0.005


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. ``size`` is in bytes (None where unknown); ``size_exact`` False
    where it is an estimate (see the module docstring)."""

    name: str
    family: str  # "sam1" | "sam2"
    version: str  # "1" | "2.0" | "2.1" (EdgeTAM: "2.0", its heads are SAM 2.0's)
    variant: str  # vit_b / vit_l / vit_h / vit_t | tiny / small / base_plus / large | edgetam
    filename: str
    url: str
    sha256: str  # "" where the publisher gives another digest (micro-sam: xxh128)
    size: int | None = None
    bundled: bool = False  # ships inside the package (the embedded model): never downloaded
    size_exact: bool = True
    xxh128: str = ""  # micro-sam's digest of the file
    source: str = "official"  # "official" (Meta) | "micro-sam" | "bundled"
    decoder_url: str = ""  # micro-sam's instance-segmentation (AIS) decoder file, if any
    decoder_xxh128: str = ""

    @property
    def known_hash(self) -> str:
        """``"sha256:<hex>"`` or ``"xxh128:<hex>"`` (pooch's notation) of the weights file."""
        return f"sha256:{self.sha256}" if self.sha256 else f"xxh128:{self.xxh128}"

    @property
    def has_decoder(self) -> bool:
        return bool(self.decoder_url)

    @property
    def decoder_filename(self) -> str:
        return f"{Path(self.filename).stem}_decoder.pt" if self.decoder_url else ""

    @property
    def decoder_path(self) -> Path | None:
        """Where the cached decoder file lives (or would live); None without a decoder."""
        return cache_dir() / self.decoder_filename if self.decoder_url else None

    @property
    def path(self) -> Path:
        """Where the cached official file lives (or would live); the package file if bundled."""
        if self.bundled:
            from .weights import WEIGHTS_FILE

            return WEIGHTS_FILE
        return cache_dir() / self.filename

    @property
    def cache_state(self) -> str:
        """``"missing"``, ``"cached"`` (a file of the expected size: see the module
        docstring) or ``"other size"`` (a file is there, but not one of this size)."""
        path = self.path
        if not path.is_file():
            return "missing"
        return "cached" if self.size_matches(path.stat().st_size) else "other size"

    @property
    def cached(self) -> bool:
        """A file of the expected size is at :attr:`path` (its SHA-256 is checked on load)."""
        return self.cache_state == "cached"

    def size_matches(self, nbytes: int) -> bool:
        """Whether a file of ``nbytes`` bytes can be this model's file."""
        if self.size is None:
            return True
        if self.size_exact:
            return nbytes == self.size
        return abs(nbytes - self.size) <= APPROX_SIZE_TOLERANCE * self.size

    @property
    def size_text(self) -> str:
        if self.size is None:
            return "size unknown"
        mib = f"{self.size / 2**20:,.0f} MiB"
        return mib if self.size_exact else f"about {mib}"


def _sam1(variant: str, file: str, sha: str, size: int, exact: bool = True) -> ModelInfo:
    return ModelInfo(f"sam_{variant}", "sam1", "1", variant, file, SAM1_BASE + file, sha, size, size_exact=exact)


def _sam2(version: str, variant: str, sha: str, size: int, exact: bool = False) -> ModelInfo:
    prefix = "sam2" if version == "2.0" else "sam2.1"
    file = f"{prefix}_hiera_{variant}.pt"
    base = SAM2_BASE if version == "2.0" else SAM21_BASE
    return ModelInfo(f"{prefix}_hiera_{variant}", "sam2", version, variant, file, base + file, sha, size,
                     size_exact=exact)


def _microsam(name: str, url: str, xxh: str, size: int, decoder_url: str = "", decoder_xxh: str = "") -> ModelInfo:
    return ModelInfo(name, "sam1", "1", name[:5], f"{name}.pt", url, "", size, size_exact=False, xxh128=xxh,
                     source="micro-sam", decoder_url=decoder_url, decoder_xxh128=decoder_xxh)


def _bioimageio(name: str, model_id: str, file: str, xxh: str, size: int, decoder_xxh: str) -> ModelInfo:
    base = f"{BIOIMAGEIO}{model_id}/files/{file}"
    return _microsam(name, f"{base}.pt", xxh, size, f"{base}_decoder.pt", decoder_xxh)


def _owncloud(name: str, share: str, xxh: str, size: int, decoder_share: str, decoder_xxh: str) -> ModelInfo:
    return _microsam(name, f"{OWNCLOUD}{share}/download", xxh, size, f"{OWNCLOUD}{decoder_share}/download", decoder_xxh)


# sizes in bytes; exact=False: estimated from the official key shapes (module docstring)
_MODELS: tuple[ModelInfo, ...] = (
    _sam1("vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383),
    _sam1("vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
          1_249_524_607, exact=False),
    _sam1("vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879),
    _sam2("2.0", "tiny", "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125", 155_934_728),
    _sam2("2.0", "small", "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3", 184_341_512),
    _sam2("2.0", "base_plus", "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071", 323_531_528),
    _sam2("2.0", "large", "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b", 898_009_544),
    _sam2("2.1", "tiny", "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 156_008_466, exact=True),
    _sam2("2.1", "small", "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 184_408_520),
    _sam2("2.1", "base_plus", "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 323_598_536),
    _sam2("2.1", "large", "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 898_076_552),
    ModelInfo("edgetam", "sam2", "2.0", "edgetam", "edgetam.pt", EDGETAM_URL,
              "ed2d4850b8792c239689b043c47046ec239b6e808a3d9b6ae676c803fd8780df", 56_116_523),
)

# micro-sam 1.8.14 (micro_sam/util.py models()): names, URLs, xxh128 digests as published there.
# Sizes: estimates from the key shapes (module docstring); vit_b/l/h: the official SAM files.
_MICROSAM: tuple[ModelInfo, ...] = (
    _microsam("vit_t", f"{OWNCLOUD}TuDzuwVDHd1ZDnQ/download", "8eadbc88aeb9d8c7e0b4b60c3db48bd0", 40_701_512),
    _bioimageio("vit_b_lm", "diplomatic-bug/1.2", "vit_b", "fe9252a29f3f4ea53c15a06de471e186", 375_043_392,
                "708b15ac620e235f90bb38612c4929ba"),
    _bioimageio("vit_l_lm", "idealistic-rat/1.2", "vit_l", "017f20677997d628426dec80a8018f9d", 1_249_526_592,
                "2faeafa03819dfe03e7c46a44aaac64a"),
    _bioimageio("vit_t_lm", "faithful-chicken/1.1", "vit_t", "72ec5074774761a6e5c05a08942f981e", 40_701_512,
                "3e914a5f397b0312cdd36813031f8823"),
    _bioimageio("vit_b_em_organelles", "noisy-ox/1.2", "vit_b", "f3bf2ed83d691456bae2c3f9a05fb438", 375_043_392,
                "bb6398956a6b0132c26b631c14f95ce2"),
    _bioimageio("vit_l_em_organelles", "humorous-crab/1.2", "vit_l", "810b084b6e51acdbf760a993d8619f2d",
                1_249_526_592, "334877640bfdaaabce533e3252a17294"),
    _bioimageio("vit_t_em_organelles", "greedy-whale/1", "vit_t", "253474720c497cce605e57c9b1d18fd9", 40_701_512,
                "8f897c7bb93174a4d1638827c4dd6f44"),
    _owncloud("vit_b_histopathology", "sBB4H8CTmIoBZsQ", "ffd1a2cd84570458b257bd95fdd8f974", 375_043_392,
              "KO9AWqynI7SFOBj", "6a66194dcb6e36199cbee2214ecf7213"),
    _owncloud("vit_l_histopathology", "IZgnn1cpBq2PHod", "b591833c89754271023e901281dee3f2", 1_249_526_592,
              "oIs6VSmkOp7XrKF", "46aab7765d4400e039772d5a50b55c04"),
    _owncloud("vit_h_histopathology", "L7AcvVz7DoWJ2RZ", "bd1856dafc156a43fb3aa705f1a6e92e", 2_564_553_536,
              "1qAKxy5H0jgwZvM", "3ed9f87e46ad5e16935bd8d722c8dc47"),
    _owncloud("vit_b_medical_imaging", "f5Ol4FrjPQWfjUF", "40169f1e3c03a4b67bff58249c176d92", 375_043_392,
              "ahd3ZhZl2e0RIwz", "9e498b12f526f119b96c88be76e3b2ed"),
)

#: micro-sam's names for the official SAM 1 files (the same files and SHA-256 as ``sam_vit_*``).
MICROSAM_ALIASES = {"vit_b": "sam_vit_b", "vit_l": "sam_vit_l", "vit_h": "sam_vit_h"}


def cache_dir() -> Path:
    """The weights cache: ``$NAPARI_SAM_CACHE`` if set, else the user's cache folder."""
    env = os.environ.get("NAPARI_SAM_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-sam"))


def _embedded() -> ModelInfo:
    from .weights import WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_SIZE

    return ModelInfo("embedded", "sam2", "2.1", "embedded", WEIGHTS_FILE.name, "", WEIGHTS_SHA256,
                     WEIGHTS_SIZE, bundled=True, source="bundled")


def list_models() -> list[ModelInfo]:
    """Every model this package can load — the bundled ``embedded`` model first, then the
    official ones, then micro-sam's — with ``cached`` telling what is on disk."""
    return [_embedded(), *_MODELS, *_MICROSAM]


def model_info(name: str) -> ModelInfo:
    """The entry of ``name``; micro-sam's ``vit_b`` / ``vit_l`` / ``vit_h`` name the official
    SAM 1 files (``sam_vit_b`` ...)."""
    name = MICROSAM_ALIASES.get(name, name)
    for info in list_models():
        if info.name == name:
            return info
    names = ", ".join(m.name for m in list_models())
    raise ValueError(f"unknown model {name!r}; choose one of: {names}")


#: The official model a user most likely wants when several are cached (fast first); on a
#: machine without a CUDA GPU EdgeTAM comes first (:func:`default_model`).
PREFERENCE = ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
              "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large",
              "sam_vit_b", "sam_vit_l", "sam_vit_h",
              "vit_b_lm", "vit_t_lm", "vit_l_lm", "vit_b_em_organelles", "vit_t_em_organelles",
              "vit_l_em_organelles", "vit_b_histopathology", "vit_l_histopathology", "vit_h_histopathology",
              "vit_b_medical_imaging", "vit_t", "edgetam")


def default_model(gpu: bool | None = None) -> str:
    """The model to offer first: the preferred cached official model (a file of its size in
    the cache), else ``"embedded"`` (bundled: works offline, out of the box). Without a CUDA
    GPU (``gpu`` None: asks torch) a cached EdgeTAM is preferred: its 1024-px embedding takes
    3.4 s on one CPU thread where SAM 2.1 tiny's takes 4-6 s, and it tracks with a compressed
    memory (docs/models.md, "Which model")."""
    cached = {m.name for m in (*_MODELS, *_MICROSAM) if m.cached}
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    order = PREFERENCE if gpu else ("edgetam", *PREFERENCE)
    return next((n for n in order if n in cached), "embedded")


def build_model(info: ModelInfo):
    """The architecture of ``info`` with default-initialised weights (eval mode)."""
    if info.bundled:
        from .weights import build_embedded

        return build_embedded()
    if info.variant == "edgetam":
        from .models.edgetam.build import build_edgetam

        model = build_edgetam()
    elif info.family == "sam1" and info.variant == "vit_t":
        from .models.tinyvit import build_sam1_vit_t

        model = build_sam1_vit_t()
    elif info.family == "sam1":
        from .models.sam1 import Sam1Config, build_sam1

        model = build_sam1(Sam1Config.preset(info.variant))
    else:
        from .models.sam2 import SAM2_CONFIGS, build_sam2

        model = build_sam2(SAM2_CONFIGS[info.name])
    model.name = info.name
    return model.eval()


def resolve_device(device: str | None = "auto"):
    """``"auto"`` -> cuda, else mps, else cpu. An explicit device that is absent is an error."""
    import torch

    name = "auto" if device is None else str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was requested but this PyTorch has no usable CUDA GPU; use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(f"device {name!r} was requested but MPS (Apple GPU) is not available; use device='cpu' or 'auto'")
    return dev


def load_model(name: str = "embedded", checkpoint=None, device: str = "auto"):
    """Build model ``name`` and load its weights: the official file, or ``checkpoint``.

    ``checkpoint=None`` uses the cached official file, downloading it once (hash checked);
    for ``"embedded"`` the file bundled in the package (no download); for a micro-sam model
    with an instance-segmentation decoder, its ``<name>_decoder.pt`` as well. A path loads
    that file: the official format (for ``"embedded"`` also the training script's
    ``weights.pt``); for micro-sam's names also torch_em's ``{"model_state": {"sam.…"},
    "decoder_state": …}``. The model comes back in eval mode on ``device``; micro-sam's
    decoder tensors, where there are any, as ``model.ais_decoder_state`` (else None).

    Weights must match the architecture's keys and shapes exactly. Floating-point weights of
    any precision (float16 / bfloat16 / float32 / float64) are converted to the model's
    dtype; integer or bool tensors in place of floating-point weights are refused with a
    :class:`~napari_sam.checkpoints.CheckpointError` naming the first such key and its dtype.
    A micro-sam file given under an official SAM name is refused with the name to use: a
    torch_em-format file always, a flat one when its xxh128 is one of micro-sam's published
    files (checked where ``xxhash`` is installed). An EdgeTAM file under any other name, or a
    SAM file under ``"edgetam"``, is refused before the model is built, saying what the file
    is and which name loads it. A cached file with another hash is never deleted (see
    :func:`napari_sam.checkpoints.fetch`).
    """
    from . import checkpoints

    info = model_info(name)
    dev = resolve_device(device)
    path = checkpoints.fetch(info) if checkpoint is None else checkpoint
    ckpt = checkpoints.read_checkpoint(path)
    if info.source == "official" and checkpoint is not None:
        _refuse_microsam_file(info, ckpt, path)
    checkpoints.refuse_other_family(ckpt.state_dict, info.name, info.variant == "edgetam", str(path))
    model = build_model(info)
    checkpoints.load_into(model, ckpt.state_dict, info.name, str(path))
    decoder, decoder_source = ckpt.decoder_state, str(path)
    if decoder is None and checkpoint is None and info.has_decoder:
        decoder_path = checkpoints.fetch_decoder(info)
        decoder, decoder_source = checkpoints.read_state_dict(decoder_path), str(decoder_path)
    if decoder is not None:
        decoder = checkpoints.check_decoder(decoder, model.config.out_chans, info.name, decoder_source)
    model.ais_decoder_state = decoder
    return model.to(dev)


def _refuse_microsam_file(info: ModelInfo, ckpt, path) -> None:
    """An official SAM name takes Meta's files; a micro-sam file is named back to its own name."""
    from . import checkpoints

    if ckpt.format == "torch_em":
        looks = checkpoints.describe(ckpt.state_dict)
        v = "vit_t" if "vit_t" in looks else next((w for w in ("vit_b", "vit_l", "vit_h") if w in looks), "vit_b")
        names = ", ".join(f"'{m.name}'" for m in _MICROSAM if m.variant == v)
        raise checkpoints.CheckpointError(
            f"{path} is a micro-sam (torch_em) checkpoint of {looks}, not the official {info.name!r} "
            f"file: load it under its micro-sam name ({names}), e.g. load_model('{v}_lm', checkpoint=...)"
        )
    try:
        digest = checkpoints.hash_of(path, "xxh128")
    except checkpoints.CheckpointError:  # xxhash not installed: the file cannot be recognised
        return
    known = next((m for m in _MICROSAM if m.xxh128 == digest), None)
    if known is not None:
        raise checkpoints.CheckpointError(
            f"{path} is micro-sam's {known.name!r} file (its xxh128 matches), not the official "
            f"{info.name!r} file: load it with load_model('{known.name}', checkpoint=...)"
        )
