"""Ours vs micro-sam 1.8.14 on the same random weights, CPU: embedding (vit_b, vit_t), click ->
mask, AIS, segment everything and a z-stack (``--what embed click ais amg zstack``).

Click -> mask: one positive click, multimask, on an embedding both sides already hold (ours
``ImagePredictor.predict``, micro-sam's ``SamPredictor.predict`` after ``set_precomputed``).
AIS: decoder + watershed from a precomputed embedding on a 512 x 512 image (ours
``AisSegmenter.generate(image, features=...)``, micro-sam's
``InstanceSegmentationWithDecoder.initialize(image, image_embeddings=...)`` + ``generate()``),
same random UNETR decoder weights (tests/golden/make_ais_golden.py ``decoder_state``).
AMG: the 32 x 32 point grid on a 512 x 512 synthetic nuclei image from a precomputed embedding
on both sides, micro-sam's default parameters (IoU > 0.88, stability >= 0.95, box NMS 0.7, no
crops, no small-region removal): ours ``AutomaticSegmenter(model, AutomaticParams.official(
"sam1")).generate(image, features=...)``, micro-sam's ``AutomaticMaskGenerator.initialize(
image, image_embeddings=...)`` + ``generate()``.
Z-stack: one object given as a mask on the middle slice of 8 slices (512 x 512) and carried
through the others from precomputed embeddings, time per carried slice. micro-sam:
``segment_mask_in_volume`` (SAM 1 vit_t, its default ``single_point`` projection, IoU stop
threshold 0 so that every slice is segmented with random weights); ours: ``VideoSession``
propagation forward and backward (SAM 2: the models differ; ``--zstack-models``).

micro-sam's path: ``micro_sam.util.get_sam_model(model_type, checkpoint_path=...)`` then
``precompute_image_embeddings(predictor, image, ndim=2)``; ours: ``load_model(name,
checkpoint=...)`` then ``ImagePredictor.set_image(image)``. Both start from the same uint8
image (1024 x 1024 x 3, so no resizing) and the same random weights file in the official
format. Runs alternate (``benchmarks/common.py: interleaved``), medians after a warm-up.

    OMP_NUM_THREADS=2 python benchmarks/bench_microsam.py --threads 2 --repeats 3
writes ``benchmarks/results/microsam.json``. micro-sam is a benchmark-only dependency:
``pip install micro-sam==1.8.14 --no-deps`` plus what its util module imports (see docs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, machine  # noqa: E402

OUT = Path(__file__).parent / "results" / "microsam.json"


def _weights(model_type: str, folder: Path) -> Path:
    """Random weights in MobileSAM / SAM's flat state_dict format (MobileSAM's builder)."""
    from mobile_sam import sam_model_registry

    torch.manual_seed(0)
    sd = {k: v for k, v in sam_model_registry[model_type]().state_dict().items() if k not in ("pixel_mean", "pixel_std")}
    path = folder / f"{model_type}_random.pt"
    torch.save(sd, path)
    return path


def _microsam_file(flat: Path, folder: Path) -> Path:
    """The flat weights as torch_em's file with a random AIS decoder (what ours loads for vit_t_lm)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from golden.make_ais_golden import decoder_state

    sd = torch.load(flat, weights_only=True)
    path = folder / "lm_random.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in sd.items()}, "decoder_state": decoder_state(False)}, path)
    return path


def bench_click(model_type, path, repeats) -> dict:
    import micro_sam.util as mutil

    import napari_sam as ns

    image = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
    with torch.no_grad():
        emb = mutil.precompute_image_embeddings(theirs, image, ndim=2, verbose=False)
    mutil.set_precomputed(theirs, emb)
    ours = ns.ImagePredictor(ns.load_model(model_type, checkpoint=path, device="cpu"))
    ours.set_image(image)
    xy = np.array([[200.0, 300.0]])

    def run_theirs():
        theirs.predict(point_coords=xy, point_labels=np.array([1]), multimask_output=True)

    def run_ours():
        ours.predict(points=xy, labels=np.array([1]), multimask=True)

    t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=repeats, warmup=2)
    return {"what": "click -> mask", "model": model_type, "image": "512x512x3 uint8"} | _times(t)


def bench_ais(model_type, path, folder, repeats) -> dict:
    import micro_sam.util as mutil
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder, get_decoder

    import napari_sam as ns
    from napari_sam.engine.auto.ais import AisSegmenter

    image = np.random.default_rng(2).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    lm = _microsam_file(path, folder)
    model = ns.load_model(f"{model_type}_lm", checkpoint=lm, device="cpu")
    theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
    decoder = get_decoder(theirs.model.image_encoder, model.ais_decoder_state, device="cpu").eval()
    seg_theirs = InstanceSegmentationWithDecoder(theirs, decoder)
    with torch.no_grad():
        emb = mutil.precompute_image_embeddings(theirs, image, ndim=2, verbose=False)
    ours = AisSegmenter(model)
    pred = ns.ImagePredictor(model)
    pred.set_image(image)
    feats = pred.embedding()

    def run_theirs():
        seg_theirs.initialize(image, image_embeddings=emb, verbose=False)
        seg_theirs.generate()

    def run_ours():
        ours.generate(image, features=feats)

    t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=repeats, warmup=1)
    return {"what": "AIS (decoder + watershed, from the embedding)", "model": f"{model_type}_lm",
            "image": "512x512x3 uint8"} | _times(t)


def bench_amg(model_type, path, repeats) -> dict:
    import micro_sam.util as mutil
    from micro_sam.instance_segmentation import AutomaticMaskGenerator

    import napari_sam as ns
    from napari_sam.data import synthetic
    from napari_sam.engine.auto.segmenter import AutomaticParams
    from napari_sam.engine.image.preprocess import to_uint8_rgb

    image = to_uint8_rgb(synthetic.nuclei_2d(shape=(512, 512), n_objects=60, seed=0).image)
    theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
    with torch.no_grad():
        emb = mutil.precompute_image_embeddings(theirs, image, ndim=2, verbose=False)
    amg = AutomaticMaskGenerator(theirs)  # micro-sam's defaults
    model = ns.load_model(model_type, checkpoint=path, device="cpu")
    ours = ns.AutomaticSegmenter(model, AutomaticParams.official("sam1"))
    pred = ns.ImagePredictor(model)
    pred.set_image(image)
    feats = pred.embedding()

    def run_theirs():
        amg.initialize(image, image_embeddings=emb, verbose=False)
        amg.generate()

    def run_ours():
        ours.generate(image, features=feats)

    # no warm-up run: both decoders are warm from the embedding above, and one micro-sam run
    # takes minutes (its MaskData.cat deep-copies every mask's RLE, batch after batch)
    t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=repeats, warmup=0)
    return {"what": "AMG (32x32 points, from the embedding)", "model": model_type,
            "image": "512x512 synthetic nuclei"} | _times(t)


def _volume(n: int = 8, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) uint8 nuclei drifting 3 px per slice, and a disc mask on the middle slice."""
    from napari_sam.data import synthetic
    from napari_sam.engine.image.preprocess import to_uint8_rgb

    base = to_uint8_rgb(synthetic.nuclei_2d(shape=(size + 3 * n, size + 3 * n), n_objects=60, seed=1).image)[..., 0]
    vol = np.stack([base[3 * z: 3 * z + size, 3 * z: 3 * z + size] for z in range(n)])
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 10) ** 2
    return vol, disc


def _sam2_file(name: str, folder: Path) -> Path:
    """Random (seeded, perturbed) SAM 2 weights in the official {"model": state_dict} format."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from conftest import perturb_

    from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2

    torch.manual_seed(0)
    model = perturb_(build_sam2(SAM2_CONFIGS[name]), seed=0, scale=0.06)
    path = folder / f"{name}_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def bench_zstack(model_type, path, folder, ours_name, repeats) -> dict:
    import micro_sam.util as mutil
    from micro_sam.multi_dimensional_segmentation import segment_mask_in_volume

    import napari_sam as ns

    vol, disc = _volume()
    n, mid = len(vol), len(vol) // 2
    theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
    with torch.no_grad():
        emb = mutil.precompute_image_embeddings(theirs, vol, ndim=3, verbose=False)
    if ours_name == "embedded":
        model = ns.load_model("embedded", device="cpu")
    else:
        model = ns.load_model(ours_name, checkpoint=_sam2_file(ours_name, folder), device="cpu")
    store = ns.EmbeddingStore(None, model, vol)
    store.precompute()

    def run_theirs():
        seg = np.zeros(vol.shape, dtype=np.uint32)
        seg[mid] = disc
        segment_mask_in_volume(seg, theirs, emb, np.array([mid]), stop_lower=False, stop_upper=False,
                               iou_threshold=0.0, projection="single_point")

    def run_ours():
        session = ns.VideoSession(model, vol, embeddings=store)
        session.add_mask(mid, 1, disc)
        for direction in ("forward", "backward"):
            for _ in session.propagate(direction=direction, start=mid):
                pass

    t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=repeats, warmup=1)
    t = {k: v / (n - 1) for k, v in t.items()}  # per carried slice
    return {"what": "z-stack, per slice (mask on the middle of 8 slices, from embeddings)",
            "model": f"micro-sam {model_type} (SAM 1, point projection) / ours {ours_name} (SAM 2 memory)",
            "image": "8x512x512 uint8"} | _times(t)


def _times(t: dict) -> dict:
    return {"micro_sam_s": round(t["micro-sam"], 4), "ours_s": round(t["ours"], 4),
            "ratio": round(t["ours"] / t["micro-sam"], 3)}


def write_md(result: dict, path: Path) -> None:
    lines = [f"# Ours vs micro-sam {result['micro_sam']} (CPU, {result['threads']} thread(s), medians of "
             f"{result['repeats']}, interleaved; random weights)", "",
             "| what | model | image | micro-sam (s) | ours (s) | ours / micro-sam |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r.get('what', 'embedding')} | {r['model']} | {r['image']} | {r['micro_sam_s']} | "
                     f"{r['ours_s']} | {r['ratio']} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["vit_t", "vit_b"])
    ap.add_argument("--what", nargs="+", default=["embed", "click", "ais"],
                    choices=["embed", "click", "ais", "amg", "zstack"])
    ap.add_argument("--ais-models", nargs="+", default=["vit_t"])
    ap.add_argument("--zstack-models", nargs="+", default=["embedded", "sam2.1_hiera_tiny"],
                    help="our SAM 2 model(s) for the z-stack row (micro-sam's side: --models)")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True) for the whole process (both sides alike)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from napari_sam.engine.malloc_tuning import tune_malloc

    tune_malloc()  # process-wide (both sides alike), as the CLI / widget opt in
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore")
    import micro_sam.util as mutil

    import napari_sam as ns

    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in args.models:
            path = _weights(model_type, Path(tmp))
            if "click" in args.what:
                rows.append(bench_click(model_type, path, max(args.repeats, 5)))
                print(rows[-1], flush=True)
            if "ais" in args.what and model_type in args.ais_models:
                rows.append(bench_ais(model_type, path, Path(tmp), args.repeats))
                print(rows[-1], flush=True)
            if "amg" in args.what:
                rows.append(bench_amg(model_type, path, args.repeats))
                print(rows[-1], flush=True)
            if "zstack" in args.what:
                for name in args.zstack_models:
                    rows.append(bench_zstack(model_type, path, Path(tmp), name, args.repeats))
                    print(rows[-1], flush=True)
            if "embed" not in args.what:
                continue
            theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
            ours = ns.ImagePredictor(ns.load_model(model_type, checkpoint=path, device="cpu"))

            def run_theirs():
                with torch.no_grad():
                    mutil.precompute_image_embeddings(theirs, image, ndim=2, verbose=False)

            def run_ours():
                ours.set_image(image)

            t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=args.repeats, warmup=1)
            row = {"what": "embedding", "model": model_type, "image": "1024x1024x3 uint8", "micro_sam_s": round(t["micro-sam"], 3),
                   "ours_s": round(t["ours"], 3), "ratio": round(t["ours"] / t["micro-sam"], 3)}
            print(row, flush=True)
            rows.append(row)
            del theirs, ours
    result = {"machine": machine(), "threads": args.threads, "repeats": args.repeats, "warmup": 1,
              "micro_sam": "1.8.14", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    write_md(result, args.out.with_suffix(".md"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
