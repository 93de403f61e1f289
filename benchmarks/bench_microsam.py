"""Embedding time, ours vs micro-sam 1.8.14, for vit_b and vit_t (same random weights, CPU).

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["vit_t", "vit_b"])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import micro_sam.util as mutil

    import napari_sam as ns

    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in args.models:
            path = _weights(model_type, Path(tmp))
            theirs = mutil.get_sam_model(model_type, device="cpu", checkpoint_path=path)
            ours = ns.ImagePredictor(ns.load_model(model_type, checkpoint=path, device="cpu"))

            def run_theirs():
                with torch.no_grad():
                    mutil.precompute_image_embeddings(theirs, image, ndim=2, verbose=False)

            def run_ours():
                ours.set_image(image)

            t = interleaved({"micro-sam": run_theirs, "ours": run_ours}, repeats=args.repeats, warmup=1)
            row = {"model": model_type, "image": "1024x1024x3 uint8", "micro_sam_s": round(t["micro-sam"], 3),
                   "ours_s": round(t["ours"], 3), "ratio": round(t["ours"] / t["micro-sam"], 3)}
            print(row, flush=True)
            rows.append(row)
            del theirs, ours
    result = {"machine": machine(), "threads": args.threads, "repeats": args.repeats, "warmup": 1,
              "micro_sam": "1.8.14", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
