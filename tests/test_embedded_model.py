"""The bundled embedded model: listed first, cached, small, verified by SHA-256, loaded
offline, the default while no official weights are cached."""

from __future__ import annotations

import torch

import napari_sam as ns
from napari_sam import cli, registry
from napari_sam.checkpoints import CheckpointError, sha256_of
from napari_sam.weights import WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_SIZE, load_embedded


def test_listed_first_bundled_and_verified():
    info = ns.list_models()[0]
    assert info.name == "embedded" and info.family == "sam2" and info.bundled
    assert info.cached and info.path == WEIGHTS_FILE
    assert WEIGHTS_FILE.stat().st_size == WEIGHTS_SIZE <= 15 * 10**6
    assert sha256_of(WEIGHTS_FILE) == WEIGHTS_SHA256 == info.sha256


def test_loads_offline_like_its_own_loader(monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    model = ns.load_model("embedded", device="cpu")
    assert model.family == "sam2" and not model.training and model.image_size == 256
    ref = load_embedded()
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert ns.load_model().image_size == 256  # the API's default name is "embedded"


def test_default_is_embedded_until_official_weights_are_cached():
    assert registry.default_model() == "embedded"
    info = registry.model_info("sam2.1_hiera_small")
    info.path.parent.mkdir(parents=True, exist_ok=True)
    info.path.write_bytes(b"weights")  # a file of another size is not the official one
    assert registry.default_model() == "embedded"
    with open(info.path, "wb") as f:  # a file of the official size counts (its SHA-256 is checked at load)
        f.truncate(info.size)
    assert registry.default_model() == "sam2.1_hiera_small"


def test_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    import napari_sam.weights as weights

    bad = tmp_path / "embedded.pt"
    bad.write_bytes(WEIGHTS_FILE.read_bytes()[:1000])
    monkeypatch.setattr(weights, "WEIGHTS_FILE", bad)
    try:
        ns.load_model("embedded", device="cpu")
    except CheckpointError as err:
        assert "missing or damaged" in str(err) and "reinstall" in str(err)
    else:
        raise AssertionError("a damaged bundled file loaded")


def test_cli_lists_and_verifies_it(capsys):
    assert cli.main(["models", "list"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("embedded") and first.rstrip().endswith("cached")
    assert cli.main(["models", "verify", "embedded"]) == 0
    assert "embedded: ok" in capsys.readouterr().out
    assert cli.main(["models", "download", "embedded"]) == 0
    assert "bundled" in capsys.readouterr().out


def test_video_session_warns_only_for_models_that_do_not_track():
    """The bundled weights track (``EMBEDDED_TRACKS``): no warning. A model marked
    ``can_track = False`` (weights whose memory path is not trained) gets one."""
    import warnings

    import numpy as np
    import pytest

    from napari_sam.weights import EMBEDDED_TRACKS, build_embedded

    model = ns.load_model("embedded", device="cpu")
    assert model.can_track is EMBEDDED_TRACKS is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ns.VideoSession(model, np.zeros((3, 32, 32), np.uint8)).close()
    untrained = build_embedded()
    untrained.can_track = False
    with pytest.warns(UserWarning, match="does not track well"):
        ns.VideoSession(untrained, np.zeros((3, 32, 32), np.uint8)).close()


def test_segment_everything_uses_the_models_defaults():
    from napari_sam.engine.auto.segmenter import AutomaticParams, AutomaticSegmenter
    from napari_sam.weights import EMBEDDED_AUTO_DEFAULTS

    model = ns.load_model("embedded", device="cpu")
    params = AutomaticSegmenter(model).params
    for k, v in EMBEDDED_AUTO_DEFAULTS.items():
        assert getattr(params, k) == v != getattr(AutomaticParams(), k)
    assert AutomaticSegmenter(model, stability_score_thresh=0.95).params.stability_score_thresh == 0.95
