"""``napari-sam segment/track --model edgetam --checkpoint F`` (issue #15): the command line
runs EdgeTAM exactly as a SAM 2.1 model. F is the whole EdgeTAM (1024 px, random weights, the
object-score bias raised so that objects stay present) in the official ``{"model": sd}``
format; the movie is small (3 frames of 48 x 56) so each encode takes seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from conftest import cli_refused

from napari_sam import cli
from napari_sam.data import synthetic

T, H, W = 3, 48, 56
AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--min-mask-region-area", "4", "--max-mask-fraction", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from napari_sam.models.edgetam import EDGETAM_CONFIG, build_edgetam

    d = tmp_path_factory.mktemp("cli_edgetam")
    torch.manual_seed(3)
    state = build_edgetam(config=EDGETAM_CONFIG).state_dict()
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 10.0
    torch.save({"model": state}, d / "edgetam.pt")
    movie = synthetic.timelapse(n_frames=T, shape=(H, W), n_objects=3, seed=2, enter_rate=0.0)
    tifffile.imwrite(d / "movie.tif", movie.image, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(d / "frame.tif", movie.image[0])
    return {"dir": d, "movie": movie,
            "model": ["--model", "edgetam", "--checkpoint", str(d / "edgetam.pt"), "--device", "cpu", "--quiet"]}


def test_segment_auto_and_prompts_with_edgetam(files, tmp_path):
    d, model = files["dir"], files["model"]
    out = tmp_path / "auto.tif"
    assert cli.main(["segment", str(d / "frame.tif"), "-o", str(out), "--auto", *AUTO, *model]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (H, W) and labels.dtype == np.int32 and labels.max() >= 1
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))
    # a click on frame 1 of the movie: labels with that id on that frame only
    lab = files["movie"].labels[1]
    ys, xs = np.nonzero(lab == np.unique(lab)[1])
    csv = tmp_path / "p.csv"
    csv.write_text(f"frame,id,x,y,label\n1,7,{xs.mean():.1f},{ys.mean():.1f},1\n")
    assert cli.main(["segment", str(d / "movie.tif"), "-o", str(tmp_path / "p.tif"), "--prompts", str(csv),
                     *model]) == 0
    got = tifffile.imread(tmp_path / "p.tif")
    assert got.shape == (T, H, W) and set(np.unique(got[1])) <= {0, 7} and not got[[0, 2]].any()


def test_track_with_edgetam_writes_labels_and_the_tracks_table(files, tmp_path):
    d, model = files["dir"], files["model"]
    out = tmp_path / "tracked.tif"
    code = cli.main(["track", str(d / "movie.tif"), "-o", str(out), "--tracks", str(tmp_path / "t.csv"),
                     "--every", "0", *AUTO, *model])
    assert code == 0
    tracked = tifffile.imread(out)
    assert tracked.shape == (T, H, W) and tracked.dtype == np.int32 and tracked[0].max() >= 1
    rows = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1).reshape(-1, 6)
    for t in range(T):  # the table says what the labels say
        ids, areas = np.unique(tracked[t][tracked[t] > 0], return_counts=True)
        sel = rows[rows[:, 0] == t]
        assert sel[:, 1].astype(int).tolist() == ids.tolist() and sel[:, 4].astype(int).tolist() == areas.tolist()
    assert set(np.unique(tracked[1:])) <= set(np.unique(tracked[0]))  # no detection after frame 0: ids carried


def test_edgetam_file_under_a_sam21_name_is_one_line(files, tmp_path, capsys):
    d = files["dir"]
    cli_refused(capsys, ["segment", d / "frame.tif", "-o", tmp_path / "x.tif", "--auto", "--model",
                         "sam2.1_hiera_tiny", "--checkpoint", d / "edgetam.pt", "--device", "cpu", "--quiet"],
                "load it as 'edgetam'", str(d / "edgetam.pt"))
    assert not (tmp_path / "x.tif").exists()
