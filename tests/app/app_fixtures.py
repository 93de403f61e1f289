"""Fixtures of the application-layer tests (``from app_fixtures import small``): a small random
SAM 2.1 model (128 px input) and a short synthetic time-lapse, the model as an object and as the
files the command line reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import tifffile
import torch


@dataclass(frozen=True)
class Prompt:
    """What the widget hands a session: clicks (x, y), their labels, a box."""

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    from conftest import perturb_

    from napari_sam.data import synthetic
    from napari_sam.jobs import ModelSpec, write_model_config
    from napari_sam.models.sam2 import build_sam2, reduced_config

    d = tmp_path_factory.mktemp("app_small")
    cfg = reduced_config("2.1", image_size=128)
    torch.manual_seed(0)
    torch.save({"model": perturb_(build_sam2(cfg), seed=1).state_dict()}, d / "small.pt")
    write_model_config(d / "small.json", "sam2", cfg)
    movie = synthetic.timelapse(n_frames=4, shape=(48, 64), n_objects=3, seed=2)
    tifffile.imwrite(d / "movie.tif", movie.image, imagej=True, metadata={"axes": "TYX"})
    spec = ModelSpec("custom", str(d / "small.pt"), str(d / "small.json"), "cpu")
    return {"dir": d, "spec": spec, "model": spec.load(), "movie": movie,
            "cli_model": ["--model-config", str(d / "small.json"), "--checkpoint", str(d / "small.pt"),
                          "--device", "cpu", "--quiet"]}


def centre_click(labels: np.ndarray, k: int = 0):
    """A foreground click (x, y) at the centre of the k-th object of a labels frame."""
    ids = np.unique(labels[labels > 0])
    ys, xs = np.nonzero(labels == ids[k])
    return np.array([[xs.mean(), ys.mean()]]), np.array([1])
