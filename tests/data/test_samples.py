"""Sample data through napari's manifest: valid manifest, every sample loads as layers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sam.data import samples


def test_manifest_validates_with_imports():
    exe = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(exe), "validate", "napari-sam", "--imports"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def test_manifest_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-sam")
    assert [w.display_name for w in pm.contributions.widgets] == ["Segment Anything"]
    assert {s.key for s in pm.contributions.sample_data} >= {"nuclei_2d", "nuclei_3d", "timelapse"}
    root = Path(__file__).resolve().parents[2]
    assert (root / "napari.yaml").resolve() == (root / "src/napari_sam/napari.yaml").resolve()


@pytest.mark.parametrize("fn,ndim", [(samples.nuclei_2d, 2), (samples.cells_2d, 2), (samples.nuclei_3d, 3), (samples.timelapse, 3)])
def test_sample_layer_data(fn, ndim):
    layers = fn()
    image, kwargs, kind = layers[0]
    assert kind == "image"
    truth, tkw, tkind = layers[-1]
    assert tkind == "labels" and truth.dtype == np.int32 and truth.ndim == ndim
    assert image.shape[-ndim:] == truth.shape
    assert len(kwargs["scale"]) == ndim
