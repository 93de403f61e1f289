"""Shared fixtures and helpers for the napari-sam test-suite (CPU, no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests must never reach the network, nor the user's real cache.
os.environ.setdefault("NAPARI_SAM_OFFLINE", "1")

# The official references import a few torchvision functions; torchvision has no build for
# the CPU torch the suite runs on, so tests/_compat stands in for them (its README.md).
try:
    import torchvision  # noqa: F401
except (ImportError, OSError, RuntimeError):
    sys.modules.pop("torchvision", None)
    sys.path.insert(0, str(Path(__file__).parent / "_compat"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("napari_sam_cache")
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(cache))
    yield cache


def perturb_(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every float parameter and buffer, in place.

    Default inits leave LayerNorms at 1/0, relative-position tables and embeddings at zero:
    a parity test on those would not see a wrong axis or a missing term. Noise makes every
    tensor matter. Only what a checkpoint holds is touched (parameters and persistent
    buffers): constants such as SAM 1's pixel mean/std stay as they are. Returns the module.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.dtype)
            t.add_(noise * scale)
    return module


def max_rel_err(ours: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:
    """max |ours - ref| / max |ref| — the parity measure the issues define."""
    ours = (ours.detach().cpu() if torch.is_tensor(ours) else torch.as_tensor(np.asarray(ours))).double()
    ref = (ref.detach().cpu() if torch.is_tensor(ref) else torch.as_tensor(np.asarray(ref))).double()
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    denom = ref.abs().max().clamp_min(1e-12)
    return float((ours - ref).abs().max() / denom)


def mask_agreement(ours, ref, threshold: float = 0.0) -> float:
    """Share of pixels whose binarised value (logit > threshold) agrees."""
    a = np.asarray(torch.as_tensor(ours).detach().cpu()) > threshold
    b = np.asarray(torch.as_tensor(ref).detach().cpu()) > threshold
    return float((a == b).mean())


def cli_refused(capsys, argv, *needles) -> str:
    """Run the CLI and assert it refused with exit 2 and one ``napari-sam: error:`` line that
    holds every needle; returns that line."""
    from napari_sam import cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("napari-sam: error:") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err

