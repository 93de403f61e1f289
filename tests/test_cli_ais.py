"""``napari-sam segment --auto`` with a micro-sam model that has an instance-segmentation
decoder: AIS by default, tiled too (``--tile``), ``--point-grid`` for SAM's point grid,
point-grid options without it refused. Random-weight vit_t_lm file in torch_em's format
(encoder + ``decoder_state``); for full runs a tiny SAM 1 (S = 128) given by ``--model-config``
with a torch_em-format checkpoint (whose decoder the config path must keep)."""

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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A --model-config tiny SAM 1 (make_ais_golden's, S = 128) and its torch_em checkpoint with
    micro-sam's decoder; the tiled golden image and the small sample image as TIFFs."""
    from golden.make_ais_golden import TINY_SAM1, decoder_state, sample_image, tiny_sam1
    from golden.make_ais_tiled_golden import tiled_image

    from napari_sam.jobs import write_model_config
    from napari_sam.models.sam1 import Sam1Config

    d = tmp_path_factory.mktemp("cli_ais_tiny")
    write_model_config(d / "tiny.json", "sam1", Sam1Config(**TINY_SAM1), name="tiny_lm")
    sd = tiny_sam1().state_dict()
    torch.save({"model_state": {f"sam.{k}": v for k, v in sd.items()}, "decoder_state": decoder_state(False)},
               d / "tiny_lm.pt")
    torch.save(sd, d / "tiny_flat.pt")
    big, small = tiled_image(), sample_image()[..., 0]
    tifffile.imwrite(d / "big.tif", big)
    tifffile.imwrite(d / "small.tif", small)
    return {"dir": d, "big": big, "small": small,
            "model": ["--model-config", str(d / "tiny.json"), "--checkpoint", str(d / "tiny_lm.pt"), "--device", "cpu"]}


def test_model_config_keeps_the_checkpoints_decoder(tiny):
    """jobs.ModelSpec.load with a config: the torch_em file's decoder_state is kept (checked
    against the encoder's width), a flat file has none, a decoder of another width is refused."""
    from golden.make_ais_golden import decoder_state

    from napari_sam.checkpoints import CheckpointError
    from napari_sam.jobs import ModelSpec

    d = tiny["dir"]
    model = ModelSpec(config=str(d / "tiny.json"), checkpoint=str(d / "tiny_lm.pt"), device="cpu").load()
    want = decoder_state(False)
    assert model.ais_decoder_state is not None and set(model.ais_decoder_state) == set(want)
    assert all(torch.equal(model.ais_decoder_state[k], v) for k, v in want.items())
    flat = ModelSpec(config=str(d / "tiny.json"), checkpoint=str(d / "tiny_flat.pt"), device="cpu").load()
    assert flat.ais_decoder_state is None
    wide = dict(want)
    wide["base.block.1.weight"] = torch.zeros(wide["base.block.1.weight"].shape[0], 128,
                                              *wide["base.block.1.weight"].shape[2:])
    torch.save({"model_state": {f"sam.{k}": v for k, v in flat.state_dict().items()}, "decoder_state": wide},
               d / "wide.pt")
    with pytest.raises(CheckpointError, match=r"wide.pt.*128-channel"):
        ModelSpec(config=str(d / "tiny.json"), checkpoint=str(d / "wide.pt"), device="cpu").load()


def test_tiled_ais_through_the_cli(tiny, capsys):
    """--tile H W --halo H W with a decoder model: AIS tile by tile (AisSegmenter's labels with
    that tiling), no point-grid fallback; --tile auto on an image that fits one window runs
    AIS whole and says nothing of a fallback."""
    from napari_sam.engine.auto.ais import AisSegmenter
    from napari_sam.jobs import ModelSpec

    d = tiny["dir"]
    model = ModelSpec(config=str(d / "tiny.json"), checkpoint=str(d / "tiny_lm.pt"), device="cpu").load()
    lims = ["--contrast-limits", "0", "255"]
    assert cli.main(["segment", str(d / "big.tif"), "-o", str(d / "big_labels.tif"), "--auto", *tiny["model"],
                     "--tile", "96", "96", "--halo", "16", "16", *lims]) == 0
    err = capsys.readouterr().err
    assert "point grid" not in err and "9 tiles" in err
    want = AisSegmenter(model, tile_shape=(96, 96), halo=(16, 16)).generate(tiny["big"], contrast_limits=(0, 255))
    assert want.max() >= 10
    np.testing.assert_array_equal(tifffile.imread(d / "big_labels.tif"), want)

    assert cli.main(["segment", str(d / "small.tif"), "-o", str(d / "small_labels.tif"), "--auto", *tiny["model"],
                     "--tile", "auto", *lims]) == 0
    err = capsys.readouterr().err
    assert "does not run on tiles" not in err and "point grid" not in err
    want = AisSegmenter(model).generate(tiny["small"], contrast_limits=(0, 255))
    assert want.max() >= 2
    np.testing.assert_array_equal(tifffile.imread(d / "small_labels.tif"), want)
