"""The ``napari-sam`` command line on small synthetic files with a small random SAM 2 model.

The model is the reduced SAM 2.1 architecture (128 px input) saved as an official-format
checkpoint plus a ``--model-config`` file. The main flows run in a subprocess (the real
entry point); the many bad-input cases call ``main()`` in-process (same code, faster).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_sam import cli
from napari_sam.data import synthetic
from napari_sam.jobs import write_model_config

T, H, W = 5, 64, 80
AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--min-mask-region-area", "4", "--max-mask-fraction", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from conftest import perturb_

    from napari_sam.models.sam2 import build_sam2, reduced_config

    d = tmp_path_factory.mktemp("cli")
    cfg = reduced_config("2.1", image_size=128)
    torch.manual_seed(0)
    model = perturb_(build_sam2(cfg), seed=1)
    torch.save({"model": model.state_dict()}, d / "small.pt")
    write_model_config(d / "small.json", "sam2", cfg)
    movie = synthetic.timelapse(n_frames=T, shape=(H, W), n_objects=4, seed=2)
    tifffile.imwrite(d / "movie.tif", movie.image, imagej=True, metadata={"axes": "TYX"})
    # an OME hyperstack T, C, Y, X with two channels (nuclei in channel 1)
    two = np.stack([np.zeros_like(movie.image), movie.image], 1)
    tifffile.imwrite(d / "hyper.ome.tif", two, metadata={"axes": "TCYX", "Channel": {"Name": ["bf", "dapi"]}})
    zarr.create_array(str(d / "plain4d.zarr"), data=np.zeros((2, 2, H, W), np.uint16))
    (d / "broken.tif").write_bytes(b"II*\x00garbage" * 10)
    return {"dir": d, "model": ["--model-config", str(d / "small.json"), "--checkpoint", str(d / "small.pt"),
                                "--device", "cpu", "--quiet"], "movie": movie}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "napari_sam.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=False)


def test_segment_auto_and_track_in_subprocess(files):
    d, model = files["dir"], files["model"]
    out = d / "auto.tif"
    r = run_cli("segment", d / "movie.tif", "-o", out, "--auto", *AUTO, *model)
    assert r.returncode == 0, r.stderr
    labels = tifffile.imread(out)
    assert labels.shape == (T, H, W) and labels.dtype == np.int32 and labels.max() >= 1
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX"
    assert not list(d.glob("*.partial"))
    r = run_cli("track", d / "movie.tif", "-o", d / "tracked.zarr", "--tracks", d / "tracks.csv", "--every", "2",
                *AUTO, *model)
    assert r.returncode == 0, r.stderr
    tracked = zarr.open(str(d / "tracked.zarr"), mode="r")
    assert tracked.shape == (T, H, W) and tracked.dtype == np.int32
    rows = np.loadtxt(d / "tracks.csv", delimiter=",", skiprows=1).reshape(-1, 6)
    assert (d / "tracks.csv").read_text().splitlines()[0] == "frame,id,y,x,area,parent"
    for t in range(T):  # the table says what the labels say
        ids, areas = np.unique(tracked[t][tracked[t] > 0], return_counts=True)
        sel = rows[rows[:, 0] == t]
        assert sel[:, 1].astype(int).tolist() == ids.tolist() and sel[:, 4].astype(int).tolist() == areas.tolist()
    # an existing output is refused: one line, exit 2, no traceback, file untouched
    before = out.read_bytes()
    r = run_cli("segment", d / "movie.tif", "-o", out, "--auto", *model)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--overwrite" in r.stderr
    assert out.read_bytes() == before


def test_segment_prompts_on_a_channel_of_a_hyperstack(files, tmp_path):
    d, movie = files["dir"], files["movie"]
    ys, xs = np.nonzero(movie.labels[2] == np.unique(movie.labels[2])[1])
    csv = tmp_path / "p.csv"
    csv.write_text(f"frame,id,x,y,label\n2,7,{xs.mean():.1f},{ys.mean():.1f},1\n")
    out = tmp_path / "p.tif"
    code = cli.main(["segment", str(d / "hyper.ome.tif"), "-o", str(out), "--prompts", str(csv), "--channel", "dapi",
                     *files["model"]])
    assert code == 0
    labels = tifffile.imread(out)
    assert labels.shape == (T, H, W)
    assert set(np.unique(labels[2])) <= {0, 7} and not labels[[0, 1, 3, 4]].any()
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"id": 3, "frame": 0, "box": [2, 2, 30, 30]}]))
    assert cli.main(["segment", str(d / "movie.tif"), "-o", str(tmp_path / "j.zarr"), "--prompts", str(js),
                     *files["model"]]) == 0
    z = zarr.open(str(tmp_path / "j.zarr"), mode="r")
    assert set(np.unique(z[0])) <= {0, 3} and not np.asarray(z[1:]).any()


@pytest.mark.parametrize("case,extra,needle", [
    ("unreadable", ["broken.tif"], "not a readable TIFF"),
    ("missing", ["nope.tif"], "no such file"),
    ("unknown axes", ["plain4d.zarr"], "unknown axes"),
    ("channels", ["hyper.ome.tif"], "2 channels (bf, dapi)"),
    ("bad axes", ["movie.tif", "--axes", "YX"], "has 2 letters"),
    ("bad channel", ["hyper.ome.tif", "--channel", "5"], "out of range"),
])
def test_bad_input_one_line_nonzero(files, tmp_path, capsys, case, extra, needle):
    d = files["dir"]
    args = ["segment", str(d / extra[0]), *extra[1:], "-o", str(tmp_path / "x.tif"), "--auto", *files["model"]]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("napari-sam: error:")
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize("content,needle", [
    ("frame,id,x,y\n0,1,500,3\n", "outside the 80x64"),
    ("frame,id,x,y\n9,1,5,3\n", "frame 9 but the image has 5"),
    ("a,b\n1,2\n", "CSV needs columns"),
    ("frame,id,x,y,label\n0,1,5,3,7\n", "labels must be 1"),
])
def test_prompt_file_that_does_not_match(files, tmp_path, capsys, content, needle):
    p = tmp_path / "p.csv"
    p.write_text(content)
    args = ["segment", str(files["dir"] / "movie.tif"), "-o", str(tmp_path / "x.tif"), "--prompts", str(p), *files["model"]]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not list(tmp_path.glob("x.tif*"))


def test_models_list_and_verify(capsys, tmp_path, monkeypatch):
    from napari_sam.registry import model_info

    assert cli.main(["models", "list"]) == 0
    assert "sam2.1_hiera_tiny" in capsys.readouterr().out
    assert cli.main(["models", "verify"]) == 0
    assert capsys.readouterr().out.splitlines() == ["embedded: ok"]  # only the bundled model
    info = model_info("sam_vit_b")
    info.path.parent.mkdir(parents=True, exist_ok=True)
    info.path.write_bytes(b"truncated")
    assert cli.main(["models", "verify"]) == 1 and "sam_vit_b: CORRUPT" in capsys.readouterr().out
    assert cli.main(["models", "download", "sam2.1_hiera_tiny"]) == 2  # offline in tests
    assert "NAPARI_SAM_OFFLINE" in capsys.readouterr().err


def test_dask_cluster_embeds_each_frame_once_then_segment_and_track_reuse(files, tmp_path):
    """``embed`` through a dask.distributed LocalCluster (threads, in this process): every
    frame is encoded exactly once and written to the store; ``segment --auto`` and
    ``track`` with that store encode nothing more."""
    distributed = pytest.importorskip("distributed")
    from napari_sam.engine.store.embedding_store import EmbeddingStore
    from napari_sam.io import open_image
    from napari_sam.jobs import ModelSpec

    d, model_args = files["dir"], files["model"]
    spec = ModelSpec("custom", str(d / "small.pt"), str(d / "small.json"), "cpu")  # as the CLI names it
    model = spec.load()
    encoder = type(model.image_encoder)  # every model's encoder counts: each worker loads its own model
    calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]) if type(m) is encoder else None)
    store = tmp_path / "movie.embeddings.zarr"
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                      dashboard_address=None) as cluster:
            code = cli.main(["embed", str(d / "movie.tif"), "-o", str(store), "--scheduler", cluster.scheduler_address,
                             "--frames-per-task", "2", *model_args])
            assert code == 0
        assert sum(calls) == T
        frames, _ = open_image(d / "movie.tif").stack()
        assert EmbeddingStore(store, model, frames).is_complete()
        assert cli.main(["segment", str(d / "movie.tif"), "-o", str(tmp_path / "s.tif"), "--auto", "--embeddings",
                         str(store), *AUTO, "--workers", "2", *model_args]) == 0
        assert cli.main(["track", str(d / "movie.tif"), "-o", str(tmp_path / "t.tif"), "--tracks",
                         str(tmp_path / "t.csv"), "--embeddings", str(store), "--every", "2", *AUTO, *model_args]) == 0
        assert sum(calls) == T
    finally:
        hook.remove()
    assert tifffile.imread(tmp_path / "s.tif").shape == (T, H, W)


def test_demo_headless_tracks_the_timelapse_by_default(tmp_path, capsys):
    """The default sample is the time-lapse: labels for every frame, a tracks table, and the
    share of frames each object keeps its id, printed."""
    from napari_sam.data.samples import sample
    from napari_sam.engine.auto.tracking import id_persistence

    assert cli.main(["demo", "--headless", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    out = cap.out
    assert "demo timelapse" in cap.err and "track timelapse.tif" in cap.err and "/30 [" in cap.err  # frame by frame
    labels = tifffile.imread(tmp_path / "timelapse_labels.tif")
    truth = sample("timelapse").labels
    assert labels.shape == truth.shape and all(labels[t].any() for t in range(len(labels)))
    keep = id_persistence(truth, labels)
    assert keep >= 0.5 and f"keeps its id on {keep:.0%} of its frames" in out
    assert (tmp_path / "timelapse_tracks.csv").read_text().count("\n") > len(labels)


def test_demo_headless_segments_the_sample_with_the_bundled_model(tmp_path, capsys):
    """``napari-sam demo --headless``: no window, no download — the sample and its labels are
    written, and the printed line compares them with the ground truth."""
    assert cli.main(["demo", "--headless", str(tmp_path), "--sample", "nuclei_2d"]) == 0
    cap = capsys.readouterr()
    out = cap.out
    for stage in ("making the sample", "segmenting everything", "comparing with the ground truth"):
        assert "demo nuclei_2d" in cap.err and stage in cap.err  # progress on stderr, stage by stage
    assert "segment nuclei_2d.tif" in cap.err and "1/1 [" in cap.err
    image, labels = tifffile.imread(tmp_path / "nuclei_2d.tif"), tifffile.imread(tmp_path / "nuclei_2d_labels.tif")
    from napari_sam.data.samples import sample

    truth = sample("nuclei_2d")
    np.testing.assert_array_equal(image, truth.image)
    assert labels.shape == image.shape
    found = len(np.unique(labels[labels > 0]))
    assert found >= 10 and f"nuclei_2d: {found} objects segmented" in out
