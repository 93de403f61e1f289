"""Make tests/golden/ais_tiled_reference.npz: micro-sam 1.8.14's tiled AIS on a seeded image.

Run once where micro-sam and torch_em are installed (CI has neither):

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/make_ais_tiled_golden.py

The model is make_ais_golden's tiny SAM 1 (S = 128) with its numpy-seeded weights and
decoder; micro-sam embeds :func:`tiled_image` with ``tile_shape`` :data:`TILE` and ``halo``
:data:`HALO` (``precompute_image_embeddings``, segment-anything's ``SamPredictor``), its
``TiledInstanceSegmentationWithDecoder`` stitches the decoder's maps, and ``generate`` labels
them: once on the whole image (``generate()``), once block-wise as micro-sam's command line
does (``generate(tile_shape=TILE, halo=HALO)``, elf's parallel watershed).

micro-sam stretches every tile's channels min -> 0, max -> 255 before embedding it
(``util._to_image``); :func:`tiled_image` holds a 0 and a 255 pixel in every 8 x 8 block, so
that stretch leaves every outer window as it is (checked here): both sides embed the same
pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "ais_tiled_reference.npz"
IMAGE_SEED = 21
IMAGE_HW = (230, 210)  # 3 x 3 tiles, the last row and column smaller
TILE, HALO = (96, 96), (16, 16)  # outer windows up to 128 = S: embedded at their own size


def tiled_image() -> np.ndarray:
    """(230, 210) uint8: bright discs (some on core edges) on a noisy background, a 255 and a
    0 pixel in every 8 x 8 block."""
    rng = np.random.default_rng(IMAGE_SEED)
    yy, xx = np.mgrid[: IMAGE_HW[0], : IMAGE_HW[1]]
    img = rng.normal(50, 12, IMAGE_HW)
    centres = [(96, 40), (60, 96), (192, 150), (96, 192)] + [tuple(rng.uniform(0, IMAGE_HW)) for _ in range(14)]
    for cy, cx in centres:
        r = rng.uniform(6, 13)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 140
    img = np.clip(img, 1, 254).astype(np.uint8)
    img[::8, ::8] = 255
    img[4::8, 4::8] = 0
    return img


def tile_grid():
    """The tiles of :func:`tiled_image` (our TileGrid)."""
    from napari_sam.engine.image.tiling import TileGrid

    return TileGrid(IMAGE_HW, TILE, HALO)


def microsam_tiled(image: np.ndarray):
    """(maps (3, H, W) float32, whole-image labels, block-wise labels, per-tile maps) of
    micro-sam's tiled AIS; per-tile maps: the decoder's (3, h, w) output on each outer window."""
    from micro_sam import util
    from micro_sam.instance_segmentation import TiledInstanceSegmentationWithDecoder, get_decoder
    from segment_anything import SamPredictor

    from golden.make_ais_golden import S, decoder_state, sys_path_tests, tiny_sam1

    sys_path_tests()
    from models.test_sam1_parity import official_sam

    for tile in tile_grid():
        win = image[tile.outer_slices]
        assert np.array_equal(util._to_image(win)[..., 0], win), f"micro-sam would stretch tile {tile.index}"
    ref = official_sam(S, 32, 1, 1, (0,))
    ref.load_state_dict(tiny_sam1().state_dict(), strict=True)
    predictor = SamPredictor(ref.eval())
    predictor.model_type = predictor.model_name = "tiny_sam1"  # what micro-sam's embedding signature reads
    decoder = get_decoder(ref.image_encoder, decoder_state(False), device="cpu").eval()
    emb = util.precompute_image_embeddings(predictor, image, tile_shape=TILE, halo=HALO, verbose=False)
    seg = TiledInstanceSegmentationWithDecoder(predictor, decoder)
    seg.initialize(image, image_embeddings=emb, tile_shape=TILE, halo=HALO)
    st = seg.get_state()
    maps = np.stack([st["foreground"], st["center_distances"], st["boundary_distances"]]).astype(np.float32)
    whole = np.asarray(seg.generate()).astype(np.int32)
    blockwise = np.asarray(seg.generate(tile_shape=TILE, halo=HALO, n_threads=1)).astype(np.int32)
    per_tile = []
    with torch.no_grad():
        for tile in tile_grid():
            util.set_precomputed(predictor, emb, tile_id=tile.index)
            out = decoder(predictor.features, tuple(predictor.input_size), tuple(predictor.original_size))
            per_tile.append(out[0].numpy().astype(np.float32))
    return maps, whole, blockwise, per_tile


def main() -> None:
    import micro_sam

    from golden.make_ais_golden import sys_path_tests

    sys_path_tests()
    torch.set_num_threads(1)
    image = tiled_image()
    maps, whole, blockwise, _ = microsam_tiled(image)
    out = {"microsam_version": np.array(micro_sam.__version__), "image": image, "maps": maps,
           "labels_whole": whole, "labels_blockwise": blockwise,
           "tile_shape": np.array(TILE), "halo": np.array(HALO)}
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB):",
          {k: (v.shape, v.dtype.name) for k, v in out.items()}, "objects:", whole.max(), blockwise.max())


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE.parent))
    main()
