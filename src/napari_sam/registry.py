"""Model names -> official checkpoint facts (URL, SHA-256, size) and the builder of each.

``list_models()`` says what exists and what is already cached; ``load_model()`` builds the
architecture, finds or downloads the weights (see :mod:`napari_sam.checkpoints`) and loads
them with ``strict=True``.

Sizes: exact where the file's size is published (``sam_vit_b``, ``sam_vit_h``,
``sam2.1_hiera_tiny``); for the others an estimate from the official key shapes — the
tensors' bytes plus ~320 bytes per tensor of zip-file overhead, which gives the three known
files to within 0.005 % — marked ``size_exact=False`` and shown as "about N MiB".
``sam_vit_l``'s 1,249,524,607 bytes fit that estimate to 0.0002 % but are published nowhere
we can cite, so it counts as approximate too.

"Cached" is a cheap check, made without reading the file: a file at the cache path with the
expected size (exactly, or within :data:`APPROX_SIZE_TOLERANCE` of an estimate). A truncated
or foreign file is therefore not offered as cached (``cache_state == "other size"``); a file
of the right size is still SHA-256 checked when it loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SAM1_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


#: How far a cached file's size may be from an estimated (``size_exact=False``) size, relative.
APPROX_SIZE_TOLERANCE = 0.005


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. ``size`` is in bytes (None where unknown); ``size_exact`` False
    where it is an estimate (see the module docstring)."""

    name: str
    family: str  # "sam1" | "sam2"
    version: str  # "1" | "2.0" | "2.1"
    variant: str  # vit_b / vit_l / vit_h | tiny / small / base_plus / large
    filename: str
    url: str
    sha256: str
    size: int | None = None
    bundled: bool = False  # ships inside the package (the embedded model): never downloaded
    size_exact: bool = True

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
)


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
                     WEIGHTS_SIZE, bundled=True)


def list_models() -> list[ModelInfo]:
    """Every model this package can load — the bundled ``embedded`` model first, then the
    official ones — with ``cached`` telling what is on disk."""
    return [_embedded(), *_MODELS]


def model_info(name: str) -> ModelInfo:
    for info in list_models():
        if info.name == name:
            return info
    names = ", ".join(m.name for m in list_models())
    raise ValueError(f"unknown model {name!r}; choose one of: {names}")


#: The official model a user most likely wants when several are cached (fast first).
PREFERENCE = ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
              "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large",
              "sam_vit_b", "sam_vit_l", "sam_vit_h")


def default_model() -> str:
    """The model to offer first: the preferred cached official model (a file of its size in
    the cache), else ``"embedded"`` (bundled: works offline, out of the box)."""
    cached = {m.name for m in _MODELS if m.cached}
    return next((n for n in PREFERENCE if n in cached), "embedded")


def build_model(info: ModelInfo):
    """The architecture of ``info`` with default-initialised weights (eval mode)."""
    if info.bundled:
        from .weights import build_embedded

        return build_embedded()
    if info.family == "sam1":
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

    ``checkpoint=None`` uses the cached official file, downloading it once (SHA-256 checked);
    for ``"embedded"`` the file bundled in the package (no download). A path loads that file
    (official format; for ``"embedded"`` also the training script's ``weights.pt``). The model
    comes back in eval mode on ``device``.

    Weights must match the architecture's keys and shapes exactly. Floating-point weights of
    any precision (float16 / bfloat16 / float32 / float64) are converted to the model's
    dtype; integer or bool tensors in place of floating-point weights are refused with a
    :class:`~napari_sam.checkpoints.CheckpointError` naming the first such key and its dtype.
    A cached file with another SHA-256 is never deleted (see
    :func:`napari_sam.checkpoints.fetch`).
    """
    from . import checkpoints

    info = model_info(name)
    dev = resolve_device(device)
    path = checkpoints.fetch(info) if checkpoint is None else checkpoint
    sd = checkpoints.read_state_dict(path)
    model = build_model(info)
    checkpoints.load_into(model, sd, name, str(path))
    return model.to(dev)
