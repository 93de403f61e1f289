"""Bad checkpoint files get a clear message naming the file; dtypes are converted or refused.

Uses the bundled ``embedded`` weights (small, no download) as the good file to damage.
"""

from __future__ import annotations

import os
import re
import zipfile

import pytest
import torch

import napari_sam as ns
from napari_sam import checkpoints
from napari_sam.checkpoints import CheckpointError
from napari_sam.weights import WEIGHTS_FILE, load_embedded


@pytest.fixture(scope="module")
def good_sd():
    """The embedded model's state_dict in float32, in the file's key order."""
    return {k: v.float() for k, v in checkpoints.read_state_dict(WEIGHTS_FILE).items()}


def _save(tmp_path, obj, name="ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _load_error(path) -> str:
    with pytest.raises(CheckpointError) as err:
        ns.load_model("embedded", checkpoint=path, device="cpu")
    return str(err.value)


# ------------------------------------------------------------------ unreadable files
def test_empty_file_says_empty_and_names_it(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(b"")
    msg = _load_error(path)
    assert "empty" in msg and str(path) in msg


def _random_bytes(path):
    path.write_bytes(os.urandom(4096))


def _zip_not_torch(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not a checkpoint")


def _truncated(path):
    torch.save({"w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])


@pytest.mark.parametrize("damage", [_random_bytes, _zip_not_torch, _truncated])
def test_unreadable_file_names_it(tmp_path, damage):
    path = tmp_path / "weights.pt"
    damage(path)
    msg = _load_error(path)
    assert str(path) in msg and "not a readable PyTorch checkpoint" in msg
    assert "weights_only" not in msg  # never the advice to load it unsafely


def test_a_folder_is_not_a_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "sam_vit_b.pth").write_bytes(b"x")
    msg = _load_error(folder)
    assert str(folder) in msg and "folder" in msg and "sam_vit_b.pth" in msg


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.pt")):
        ns.load_model("embedded", checkpoint=tmp_path / "nope.pt", device="cpu")


def test_empty_or_non_tensor_state_dicts_are_named(tmp_path, good_sd):
    empty = _save(tmp_path, {"model": {}}, "empty_sd.pt")
    msg = _load_error(empty)
    assert str(empty) in msg and "no tensors" in msg
    odd = _save(tmp_path, {**good_sd, "epoch": 3}, "odd.pt")
    msg = _load_error(odd)
    assert str(odd) in msg and "'epoch'" in msg and "int" in msg


# ------------------------------------------------------------------ keys and shapes
def test_missing_unexpected_and_reshaped_keys_name_the_file(tmp_path, good_sd):
    keys = list(good_sd)
    gone = _save(tmp_path, {k: v for k, v in good_sd.items() if k != keys[5]}, "missing.pt")
    msg = _load_error(gone)
    assert str(gone) in msg and "missing 1" in msg and keys[5] in msg
    extra = _save(tmp_path, {**good_sd, "extra_head.weight": torch.zeros(3)}, "extra.pt")
    msg = _load_error(extra)
    assert str(extra) in msg and "unexpected 1" in msg and "extra_head.weight" in msg
    bent = dict(good_sd)
    bent[keys[7]] = torch.zeros(*good_sd[keys[7]].shape, 2)
    bent_path = _save(tmp_path, bent, "bent.pt")
    msg = _load_error(bent_path)
    assert str(bent_path) in msg and "1 with other shapes" in msg and keys[7] in msg


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_floating_weights_convert_to_the_model_dtype(tmp_path, good_sd, dtype):
    sd = {k: v.to(dtype) for k, v in good_sd.items()}
    model = ns.load_model("embedded", checkpoint=_save(tmp_path, {"model": sd}), device="cpu")
    got = model.state_dict()
    for k, v in sd.items():
        assert got[k].dtype == torch.float32
        assert torch.equal(got[k], v.float()), k


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool])
def test_integer_or_bool_weights_are_refused(tmp_path, good_sd, dtype):
    sd = {k: (v > 0 if dtype == torch.bool else (v * 10).to(dtype)) for k, v in good_sd.items()}
    first = next(iter(sd))
    path = _save(tmp_path, {"model": sd})
    msg = _load_error(path)
    assert str(path) in msg and repr(first) in msg and str(dtype) in msg and "refused" in msg


def test_one_integer_tensor_among_floats_is_named(tmp_path, good_sd):
    key = list(good_sd)[12]
    sd = {**good_sd, key: good_sd[key].to(torch.int8)}
    msg = _load_error(_save(tmp_path, sd))
    assert repr(key) in msg and "torch.int8" in msg
    assert sum(repr(k) in msg for k in good_sd) == 1  # only that key is blamed


# ------------------------------------------------------------------ code in a file
class _Payload:
    """Unpickling this would create a file: a checkpoint must never run code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_code_in_a_checkpoint_never_runs_on_any_load_path(tmp_path, good_sd):
    target = tmp_path / "pwned"
    path = _save(tmp_path, {"model": {**good_sd, "x": _Payload(str(target))}}, "evil.pt")
    msg = _load_error(path)
    assert "never run" in msg and str(path) in msg and "open" in msg and "weights_only" not in msg
    with pytest.raises(CheckpointError, match="never run"):
        load_embedded(path)
    assert not target.exists()


def test_load_embedded_checks_its_file(tmp_path, good_sd):
    sd = {k: v.to(torch.int8) for k, v in good_sd.items()}
    with pytest.raises(CheckpointError, match="int8"):
        load_embedded(_save(tmp_path, {"model": sd}))
    model = load_embedded()
    assert next(model.parameters()).dtype == torch.float32


# ------------------------------------------------------------------ code-executing payloads
class _Exec:
    """Unpickling this runs ``exec(source)``: the classic payload of a malicious checkpoint."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return (exec, (self.source,))


class _WriteText:
    """A payload hidden behind an allowed class's method (``pathlib.Path.write_text``)."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.write_text, (pathlib.Path(self.path), "pwned"))


@pytest.mark.parametrize("payload, glob", [(_Exec, r"Python object exec\b"),
                                           (_WriteText, r"Python object getattr\b")])
def test_code_in_a_torch_em_checkpoint_is_refused_and_never_run(tmp_path, good_sd, payload, glob):
    marker = tmp_path / "payload_ran"
    arg = f"open({str(marker)!r}, 'w').close()" if payload is _Exec else marker
    path = _save(tmp_path, {"model_state": {f"sam.{k}": v for k, v in good_sd.items()}, "init": payload(arg)})
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    for load in (lambda: checkpoints.read_checkpoint(path), lambda: ns.load_model("vit_b_lm", checkpoint=path)):
        with pytest.raises(CheckpointError) as err:
            load()
        msg = str(err.value)
        assert re.search(glob, msg) and str(path) in msg and "never run" in msg, msg
        assert not marker.exists()


def test_plain_metadata_of_training_checkpoints_is_allowed(tmp_path, good_sd):
    """torch_em's checkpoints carry numbers, strings and paths beside the weights: those load."""
    import pathlib

    import numpy as np

    path = _save(tmp_path, {"model_state": {f"sam.{k}": v for k, v in good_sd.items()},
                            "best_metric": np.float64(0.125), "iteration": np.int64(7), "shape": np.arange(3),
                            "init": {"save_root": pathlib.PurePosixPath("/data/run"), "dtype": np.dtype("float32")}})
    ckpt = checkpoints.read_checkpoint(path)
    assert ckpt.format == "torch_em" and set(ckpt.state_dict) == set(good_sd)
    assert {"best_metric", "iteration", "init"} <= set(ckpt.extra)
