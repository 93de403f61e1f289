"""What the command line must never touch, and how it fails (issue #11 items 1, 3, 4, 9).

``--overwrite`` replaces only what napari-sam wrote (an embedding store, a labels TIFF/zarr or
a tracks table of its own format); an input, a folder holding an input and a foreign file or
folder are refused with exit 2 and left as they were. Refusals happen before any work.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_refused as _refused
import tifffile
import torch
import zarr

from napari_sam import cli
from napari_sam.data import synthetic
from napari_sam.jobs import write_model_config

T, H, W = 3, 48, 64
AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--min-mask-region-area", "4", "--max-mask-fraction", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from conftest import perturb_

    from napari_sam.models.sam2 import build_sam2, reduced_config

    d = tmp_path_factory.mktemp("safety")
    cfg = reduced_config("2.1", image_size=128)
    torch.manual_seed(0)
    torch.save({"model": perturb_(build_sam2(cfg), seed=1).state_dict()}, d / "small.pt")
    write_model_config(d / "small.json", "sam2", cfg)
    movie = synthetic.timelapse(n_frames=T, shape=(H, W), n_objects=3, seed=2)
    return {"model": ["--model-config", str(d / "small.json"), "--checkpoint", str(d / "small.pt"),
                      "--device", "cpu", "--quiet"], "movie": movie.image}


def _movie(files, path, n=T):
    tifffile.imwrite(path, files["movie"][:n], imagej=True, metadata={"axes": "TYX"})
    return path


def _snapshot(root):
    """Every file under ``root`` (or the file itself) with its bytes."""
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}




# ---------------------------------------------------------------------------- item 1: --overwrite
def test_embed_overwrite_refuses_the_input_itself(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "self.tif")
    before = src.read_bytes()
    _refused(capsys, ["embed", src, "-o", src, "--overwrite", *files["model"]], "is an input")
    assert src.read_bytes() == before


def test_embed_overwrite_refuses_a_folder_that_holds_the_input(files, tmp_path, capsys):
    d = tmp_path / "experiment"
    d.mkdir()
    src = _movie(files, d / "in.tif")
    (d / "notes.txt").write_text("day 3: cells look stressed")
    before = _snapshot(d)
    _refused(capsys, ["embed", src, "-o", d, "--overwrite", *files["model"]], "holds an input image")
    assert _snapshot(d) == before


def test_embed_overwrite_refuses_a_foreign_folder_and_replaces_its_own_store(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "in.tif")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("keep me")
    _refused(capsys, ["embed", src, "-o", notes, "--overwrite", *files["model"]], "not an embedding store")
    assert (notes / "a.txt").read_text() == "keep me"
    store = tmp_path / "in.embeddings.zarr"
    assert cli.main(["embed", str(src), "-o", str(store), *files["model"]]) == 0
    (store / "stale").write_text("x")  # a file inside our own store goes with it
    assert cli.main(["embed", str(src), "-o", str(store), "--overwrite", *files["model"]]) == 0
    assert not (store / "stale").exists() and (store / "zarr.json").exists()


def test_segment_overwrite_refuses_the_input_as_output(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "movie.tif")
    before = src.read_bytes()
    _refused(capsys, ["segment", src, "-o", src, "--auto", "--overwrite", *files["model"]], "is an input")
    assert src.read_bytes() == before


@pytest.mark.parametrize("kind", ["plain tiff", "foreign zarr array", "notes folder"])
def test_segment_overwrite_refuses_what_napari_sam_did_not_write(files, tmp_path, capsys, kind):
    src = _movie(files, tmp_path / "movie.tif")
    if kind == "plain tiff":
        out = tmp_path / "result.tif"
        tifffile.imwrite(out, np.ones((T, H, W), np.int32))  # e.g. someone's hand-corrected labels
    elif kind == "foreign zarr array":
        out = tmp_path / "result.zarr"
        zarr.create_array(str(out), data=np.ones((T, H, W), np.int32))
    else:
        out = tmp_path / "result.zarr"
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    before = _snapshot(out)
    _refused(capsys, ["segment", src, "-o", out, "--auto", "--overwrite", *files["model"]],
             "not a labels file written by napari-sam", "--overwrite replaces only")
    assert _snapshot(out) == before


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_segment_overwrite_replaces_its_own_labels(files, tmp_path, suffix):
    src = _movie(files, tmp_path / "movie.tif")
    out = tmp_path / f"labels{suffix}"
    argv = ["segment", str(src), "-o", str(out), "--auto", *AUTO, *files["model"]]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--overwrite"]) == 0
    data = tifffile.imread(out) if suffix == ".tif" else np.asarray(zarr.open_array(str(out), mode="r"))
    assert data.shape == (T, H, W) and data.dtype == np.int32
    assert not list(tmp_path.glob("*.partial"))


def test_output_inside_an_input_zarr_is_refused(files, tmp_path, capsys):
    src = tmp_path / "image.zarr"
    zarr.create_array(str(src), data=files["movie"], attributes={"_ARRAY_DIMENSIONS": ["t", "y", "x"]})
    before = _snapshot(src)
    _refused(capsys, ["segment", src, "-o", src / "labels.zarr", "--auto", *files["model"]], "inside an input image")
    assert _snapshot(src) == before


def test_track_refuses_a_tracks_path_that_is_an_input_the_output_or_foreign(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "movie.tif")
    notes = tmp_path / "notes.csv"
    notes.write_text("date,what\n2024-05-01,fixed cells\n")
    keep = {p: p.read_bytes() for p in (src, notes)}
    out = tmp_path / "t.tif"
    base = ["track", src, "-o", out, *files["model"]]
    _refused(capsys, [*base, "--tracks", src, "--overwrite"], "is an input")
    _refused(capsys, [*base, "--tracks", out], "used twice")
    _refused(capsys, [*base, "--tracks", notes, "--overwrite"], "not a table written by napari-sam")
    _refused(capsys, ["segment", src, "-o", tmp_path / "s.zarr", "--auto", "--embeddings", tmp_path / "s.zarr",
                      *files["model"]], "used twice")
    assert {p: p.read_bytes() for p in keep} == keep and not out.exists()


def test_demo_headless_refuses_foreign_files_in_its_folder(tmp_path, capsys):
    mine = tmp_path / "nuclei_2d.tif"
    tifffile.imwrite(mine, np.full((8, 8), 7, np.uint16))  # the user's own image of that name
    before = mine.read_bytes()
    _refused(capsys, ["demo", "--headless", tmp_path, "--sample", "nuclei_2d"], "not a demo sample written by napari-sam")
    assert mine.read_bytes() == before
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _refused(capsys, ["demo", "--headless", a_file], "not a folder")
    assert a_file.read_text() == "x"


def test_demo_headless_accepts_its_own_earlier_outputs(tmp_path, capsys):
    """The checks pass over what an earlier demo wrote: the run goes on to the model (here a
    name that does not exist, so it stops there, quickly)."""
    from napari_sam.io import LabelsWriter, write_sample

    write_sample(tmp_path / "nuclei_2d.tif", np.zeros((8, 8), np.uint16), "YX")
    with LabelsWriter(tmp_path / "nuclei_2d_labels.tif", (8, 8), None) as wr:
        wr.write(np.zeros((8, 8), np.int32))
    code = cli.main(["demo", "--headless", str(tmp_path), "--sample", "nuclei_2d", "--model", "no_such_model"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model 'no_such_model'" in err and "written by napari-sam" not in err


# ---------------------------------------------------------------------------- item 3: --output-dir names
def test_output_dir_refuses_inputs_that_would_share_an_output_name(files, tmp_path, capsys):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    a, b = _movie(files, tmp_path / "A" / "img.tif"), _movie(files, tmp_path / "B" / "img.tif", n=2)
    out = tmp_path / "out"
    out.mkdir()
    err = _refused(capsys, ["segment", a, b, "--output-dir", out, "--auto", *files["model"]], "img_labels.tif")
    assert str(a) in err and str(b) in err and not any(out.iterdir())
    _refused(capsys, ["embed", a, a, "--output-dir", out, *files["model"]], "img.embeddings.zarr")
    assert not any(out.iterdir())


def test_output_dir_keeps_dotted_names_apart(files, tmp_path):
    a, b = _movie(files, tmp_path / "exp.t1.tif", n=2), _movie(files, tmp_path / "exp.t2.ome.tif", n=3)
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["segment", str(a), str(b), "--output-dir", str(out), "--auto", *AUTO, *files["model"]]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["exp.t1_labels.tif", "exp.t2_labels.tif"]
    assert tifffile.imread(out / "exp.t1_labels.tif").shape == (2, H, W)
    assert tifffile.imread(out / "exp.t2_labels.tif").shape == (3, H, W)


def test_output_dir_help_says_how_outputs_are_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "img.ome.tif -> img_labels.tif" in text and "same name are refused" in text


# ---------------------------------------------------------------------------- item 4: truncated stacks
def test_truncated_imagej_stack_is_refused_naming_both_counts(tmp_path, capsys):
    stack = (np.arange(20 * 128 * 128) % 3001).astype(np.uint16).reshape(20, 128, 128)
    full = tmp_path / "stack.tif"
    tifffile.imwrite(full, stack, imagej=True, metadata={"axes": "TYX"})
    cut = tmp_path / "t.tif"
    cut.write_bytes(full.read_bytes()[:590000])
    with tifffile.TiffFile(full) as tif:
        held = (590000 - tif.series[0].dataoffset) // (128 * 128 * 2)
    assert held == 17
    out = tmp_path / "labels.tif"
    _refused(capsys, ["segment", cut, "-o", out, "--auto"], "20", f"only {held}")
    assert not out.exists()


# ---------------------------------------------------------------------------- item 9: smaller ones
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_bad_input(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "movie.tif")
    model = [a if a != "cpu" else "cuda" for a in files["model"]]
    _refused(capsys, ["segment", src, "-o", tmp_path / "x.tif", "--auto", *model], "'cuda'", "CUDA")
    _refused(capsys, ["embed", src, "-o", tmp_path / "e.zarr", "--device", "gpu0"], "unknown device")
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "e.zarr").exists()


@pytest.mark.parametrize("content,needle", [
    ([1, 2], "entry 1 is 1, not an object"),
    ("just text", "a list of objects"),
    ({"objects": 5}, "a list of objects"),
    ([{"id": 1, "points": [1, 2]}], "points must be"),
    ([{"id": 1, "points": [[1, 2]], "labels": "a"}], "labels must be"),
    ([{"id": "one", "points": [[1, 2]]}], "id must be"),
    ([{"id": 1, "box": [1, 2]}], "box must be"),
])
def test_json_prompt_file_of_the_wrong_shape_is_bad_input(files, tmp_path, capsys, content, needle):
    src = _movie(files, tmp_path / "movie.tif")
    p = tmp_path / "p.json"
    p.write_text(json.dumps(content))
    _refused(capsys, ["segment", src, "-o", tmp_path / "x.tif", "--prompts", p, *files["model"]], str(p), needle)
    assert not list(tmp_path.glob("x.tif*"))


def test_track_with_an_unwritable_tracks_path_is_refused_before_any_work(files, tmp_path, capsys):
    src = _movie(files, tmp_path / "movie.tif")
    out = tmp_path / "t.tif"
    _refused(capsys, ["track", src, "-o", out, "--tracks", tmp_path / "no" / "t.csv", *files["model"]],
             "folder does not exist")
    assert not out.exists() and not list(tmp_path.glob("t.tif*"))


def test_track_when_the_table_cannot_be_written_keeps_no_labels(files, tmp_path, capsys, monkeypatch):
    """A disk that fills up while the table is written (simulated: the row writer fails) —
    the labels of this run are not left behind looking complete, and the message says so."""
    from napari_sam.io import outputs

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "_write_rows", full_disk)
    src = _movie(files, tmp_path / "movie.tif")
    out, tracks = tmp_path / "t.tif", tmp_path / "t.csv"
    code = cli.main(["track", str(src), "-o", str(out), "--tracks", str(tracks), "--every", "0", *AUTO, *files["model"]])
    err = capsys.readouterr().err
    assert code == 1 and "No space left" in err and "nothing kept" in err, err
    assert not out.exists() and not tracks.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["movie.tif"]
