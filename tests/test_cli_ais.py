"""``napari-sam segment --auto`` with a micro-sam model that has an instance-segmentation
decoder: AIS by default, ``--point-grid`` for SAM's point grid, point-grid options without it
refused, tiles falling back to the point grid (said on stderr). Random-weight vit_t_lm file
in torch_em's format (encoder + ``decoder_state``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_sam import cli

GRID = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--max-mask-fraction", "1"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from golden.make_ais_golden import decoder_state, sample_image

    from napari_sam.models.tinyvit import build_sam1_vit_t

    d = tmp_path_factory.mktemp("cli_ais")
    torch.manual_seed(0)
    sd = build_sam1_vit_t().state_dict()
    torch.save({"model_state": {f"sam.{k}": v for k, v in sd.items()}, "decoder_state": decoder_state(False)},
               d / "vit_t_lm.pt")
    image = sample_image()[..., 0]
    tifffile.imwrite(d / "img.tif", image)
    return {"dir": d, "image": image,
            "model": ["--model", "vit_t_lm", "--checkpoint", str(d / "vit_t_lm.pt"), "--device", "cpu", "--quiet"]}


def test_point_grid_flag_and_point_grid_options_without_it(lm, capsys):
    """--point-grid gives the point grid's labels (= AutomaticSegmenter on the same features);
    point-grid options without it are refused before any encoding, naming the flag to add.
    (AIS itself through the CLI: jobs.segment_frames -> make_segmenter, covered in
    tests/app/test_app_automatic.py; a vit_t AIS run at 1024 px costs ~40 s on one thread.)"""
    import napari_sam as ns
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    d = lm["dir"]
    code = cli.main(["segment", str(d / "img.tif"), "-o", str(d / "no.tif"), "--auto", *GRID, *lm["model"]])
    err = capsys.readouterr().err
    assert code == 2 and "add --point-grid" in err and "--points-per-side" in err and "AIS" in err
    assert not (d / "no.tif").exists()

    model = ns.load_model("vit_t_lm", checkpoint=d / "vit_t_lm.pt", device="cpu")
    assert model.ais_decoder_state is not None
    lims = (float(lm["image"].min()), float(lm["image"].max()))
    store = d / "img.zarr"
    assert cli.main(["segment", str(d / "img.tif"), "-o", str(d / "grid.tif"), "--auto", "--point-grid", *GRID,
                     *lm["model"], "--contrast-limits", *map(str, lims), "--embeddings", str(store)]) == 0
    feats = ns.EmbeddingStore(store, model, lm["image"], contrast_limits=lims).get(0)  # the CLI's own features
    grid = AutomaticSegmenter(model, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                              max_mask_fraction=1.0).generate(lm["image"], contrast_limits=lims, features=feats)
    assert grid.max() >= 1
    np.testing.assert_array_equal(tifffile.imread(d / "grid.tif"), grid)
