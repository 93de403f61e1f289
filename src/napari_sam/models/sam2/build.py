"""``build_sam2(config) -> Sam2``: an official name or a :class:`Sam2Config`."""

from __future__ import annotations

from .config import SAM2_CONFIGS, Sam2Config
from .model import Sam2


def build_sam2(config: Sam2Config | str) -> Sam2:
    """Build an un-initialised-weights SAM 2 model in eval mode.

    ``config``: a :class:`Sam2Config` or one of the official names in ``SAM2_CONFIGS``
    (``"sam2_hiera_tiny"`` ... ``"sam2.1_hiera_large"``). Build on the meta device
    (``with torch.device("meta"):``) to skip allocation before loading a checkpoint.
    """
    if isinstance(config, str):
        if config not in SAM2_CONFIGS:
            raise KeyError(f"unknown SAM 2 model {config!r}; choose one of {sorted(SAM2_CONFIGS)}")
        config = SAM2_CONFIGS[config]
    return Sam2(config).eval()
