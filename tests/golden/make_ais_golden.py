"""Make tests/golden/ais_reference.npz: micro-sam 1.8.14's AIS outputs on seeded inputs.

Run once where micro-sam and torch_em are installed (they need torchvision; CI has neither):

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/make_ais_golden.py

How the inputs are made (so that the CI test rebuilds them without micro-sam):

* **Weights** — :func:`numpy_state`: for every key of a module's ``state_dict()`` in sorted
  order, numpy's ``default_rng(seed)`` draws a normal tensor (convolution weights scaled by
  ``1/sqrt(fan_in)``, biases 0.1, batch-norm weight 1 + 0.1 N, running mean 0.1 N, running
  variance 0.5 + U(0, 1), ``num_batches_tracked`` 0). No torch RNG: the same numbers on
  every platform and torch version. Our decoder's key names *are* micro-sam's
  ``decoder_state`` names (the same state dict is loaded into both, strict), and our SAM 1
  encoder's are segment-anything's.
* **Decoder input** — an (1, 256, 8, 8) embedding ``default_rng(EMBED_SEED).standard_normal``
  (stored too), decoded for an image of (100, 75) whose model input is (128, 96) of S = 128.
* **Post-processing input** — :func:`synthetic_maps` (discs -> foreground / centre / boundary
  distance maps + noise), stored as float16 and compared as float32.
* **End to end** — a tiny SAM 1 (S = 128, ViT width 32, depth 1) with :func:`numpy_state`
  weights, on :func:`sample_image`; micro-sam's ``InstanceSegmentationWithDecoder`` with
  segment-anything's ``SamPredictor`` and micro-sam's ``get_decoder``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "ais_reference.npz"
DECODER_SEED, TRANSPOSED_SEED, ENCODER_SEED, EMBED_SEED, MAPS_SEED, IMAGE_SEED = 11, 12, 13, 14, 15, 16
S, INPUT_HW, IMAGE_HW = 128, (128, 96), (100, 75)
PARAM_SETS = ({}, {"min_size": 200}, {"center_distance_threshold": 0.4, "distance_smoothing": 1.1,
                                     "foreground_smoothing": 0.0})
TINY_SAM1 = dict(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                 encoder_global_attn_indexes=(0,), image_size=S)


def numpy_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded numpy-made tensors for every key of ``module.state_dict()`` (see the docstring)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, t in sorted(module.state_dict().items()):
        shape = tuple(t.shape)
        if not t.is_floating_point():
            out[key] = torch.zeros(shape, dtype=t.dtype)
            continue
        z = rng.standard_normal(shape)
        if key.endswith("running_var"):
            a = 0.5 + rng.random(shape)
        elif key.endswith("running_mean") or (key.endswith("bias") and len(shape) == 1):
            a = 0.1 * z
        elif len(shape) == 1 and key.endswith("weight"):  # norm scales
            a = 1.0 + 0.1 * z
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            a = z / np.sqrt(fan_in)
        else:
            a = 0.1 * z
        out[key] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return out


def decoder_state(transposed: bool = False) -> dict[str, torch.Tensor]:
    from napari_sam.models.ais import AisDecoder

    with torch.device("meta"):
        shapes = AisDecoder(256, transposed)
    return numpy_state(shapes, TRANSPOSED_SEED if transposed else DECODER_SEED)


def embedding() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(EMBED_SEED).standard_normal((1, 256, 8, 8)).astype(np.float32))


def tiny_sam1():
    """Our tiny SAM 1 with :func:`numpy_state` weights (segment-anything's key names)."""
    from napari_sam.models.sam1 import Sam1Config, build_sam1

    model = build_sam1(Sam1Config(**TINY_SAM1))
    model.load_state_dict(numpy_state(model, ENCODER_SEED), strict=True)
    return model.eval()


def sample_image() -> np.ndarray:
    """(100, 75, 3) uint8: bright discs on a noisy background."""
    rng = np.random.default_rng(IMAGE_SEED)
    yy, xx = np.mgrid[: IMAGE_HW[0], : IMAGE_HW[1]]
    img = rng.normal(40, 10, IMAGE_HW)
    for _ in range(8):
        cy, cx, r = rng.uniform(0, IMAGE_HW[0]), rng.uniform(0, IMAGE_HW[1]), rng.uniform(5, 11)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 150
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def synthetic_maps(seed: int = MAPS_SEED, shape=(160, 160), n: int = 25) -> np.ndarray:
    """(3, H, W) float16 decoder-like maps of ``n`` random discs: foreground, centre distance
    (0 at the centre, 1 at the rim and outside), boundary distance (1 at the rim, 0 deepest),
    plus N(0, 0.08) noise, clipped to [0, 1]."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(6, 14)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = i
    fg = (lab > 0).astype(np.float64)
    centre, boundary = np.ones(shape), np.zeros(shape)
    for i in np.unique(lab)[1:]:
        m = lab == i
        d = ndi.distance_transform_edt(m)
        boundary[m] = 1 - d[m] / d.max()
        cy, cx = ndi.center_of_mass(m)
        dc = np.hypot(yy - cy, xx - cx)[m]
        centre[m] = dc / (dc.max() + 1e-6)
    maps = np.stack([fg, centre, boundary]) + rng.normal(0, 0.08, (3, *shape))
    return np.clip(maps, 0, 1).astype(np.float16)


# ---------------------------------------------------------------------- micro-sam side
class _EncoderStub(torch.nn.Module):
    """What micro-sam's get_unetr reads of an image encoder (its size and neck width); the
    decoder never calls it (it decodes precomputed embeddings)."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size, self.in_chans = img_size, 3
        self.neck = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity(), torch.nn.Conv2d(1, 256, 1))


def microsam_decoder(state, img_size: int = S):
    from micro_sam.instance_segmentation import get_decoder

    return get_decoder(_EncoderStub(img_size), state, device="cpu").eval()


def microsam_labels(maps, **params) -> np.ndarray:
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder

    seg = InstanceSegmentationWithDecoder(None, None)
    seg.set_state({"foreground": maps[0], "center_distances": maps[1], "boundary_distances": maps[2]})
    return np.asarray(seg.generate(**params)).astype(np.int32)


def microsam_end_to_end(image: np.ndarray):
    """micro-sam's AIS on ``image`` with the tiny SAM 1 and the decoder: (the 8-bit image it
    embedded, maps, labels). micro-sam stretches every channel min -> 0, max -> 255 before
    embedding (``util._to_image``), even uint8 input; we do not, so the test feeds our side
    the image micro-sam embedded."""
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder, get_decoder
    from micro_sam.util import _to_image
    from segment_anything import SamPredictor

    sys_path_tests()
    from models.test_sam1_parity import official_sam

    ref = official_sam(S, 32, 1, 1, (0,))
    ref.load_state_dict(tiny_sam1().state_dict(), strict=True)
    predictor = SamPredictor(ref.eval())
    decoder = get_decoder(ref.image_encoder, decoder_state(False), device="cpu").eval()
    seg = InstanceSegmentationWithDecoder(predictor, decoder)
    seg.initialize(image)
    st = seg.get_state()
    maps = np.stack([st["foreground"], st["center_distances"], st["boundary_distances"]])
    return _to_image(image), maps.astype(np.float32), np.asarray(seg.generate()).astype(np.int32)


def sys_path_tests() -> None:
    import sys

    tests = str(HERE.parent)
    if tests not in sys.path:
        sys.path.insert(0, tests)


def main() -> None:
    import micro_sam

    torch.set_num_threads(1)
    out = {"microsam_version": np.array(micro_sam.__version__), "embedding": embedding().numpy()}
    with torch.no_grad():
        for name, transposed in (("maps", False), ("maps_transposed", True)):
            dec = microsam_decoder(decoder_state(transposed))
            out[name] = dec(embedding(), INPUT_HW, IMAGE_HW)[0].numpy()
    out["labels_of_maps"] = microsam_labels(out["maps"])
    synth = synthetic_maps()
    out["synthetic_maps"] = synth
    for i, params in enumerate(PARAM_SETS):
        out[f"synthetic_labels_{i}"] = microsam_labels(synth.astype(np.float32), **params)
    out["e2e_image"], out["e2e_maps"], out["e2e_labels"] = microsam_end_to_end(sample_image())
    out["e2e_maps"] = out["e2e_maps"].astype(np.float32)
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB):",
          {k: (v.shape, v.dtype.name) for k, v in out.items()})


if __name__ == "__main__":
    main()
