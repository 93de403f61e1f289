"""SAM 1 vit_b: our image encoder vs the official one, and click-to-mask latency.

Side by side in one process, same random weights, CPU fp32, 1024x1024 input; medians after
a warm-up, runs interleaved. Click latency = ImagePredictor.predict on a cached embedding:
prompt encoder + mask decoder + upscaling the 3 masks to the original image size.

    python benchmarks/bench_sam1.py [--repeats 3] [--out benchmarks/results/sam1.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import interleaved, machine, median_time

import napari_sam as ns
from napari_sam.models.sam1 import Sam1Config, build_sam1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sam1.md"))
    args = ap.parse_args()
    from segment_anything import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    ref = sam_model_registry["vit_b"]().eval()
    ours = build_sam1(Sam1Config.preset("vit_b")).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 1024, 1024)

    with torch.inference_mode():
        enc = interleaved({"official": lambda: ref.image_encoder(x), "ours": lambda: ours.encode_image(x)},
                          repeats=args.repeats)

    lines = [f"# SAM 1 vit_b benchmark\n\nMachine: {machine()}\n",
             "| measure | official | ours | ratio (ours / official) |", "|---|---|---|---|",
             f"| image encoder, 1024x1024, fp32 | {enc['official']:.2f} s | {enc['ours']:.2f} s | "
             f"{enc['ours'] / enc['official']:.2f}x |"]

    with torch.inference_mode():
        embed = ours.encode_image(x)["image_embed"]
    for size in (1024, 2048):
        pred = ns.ImagePredictor(ours)
        pred.set_embedding({"image_embed": embed}, (size, size))
        off = SamPredictor(ref)  # the same cached embedding, as set_image would leave it
        off.features, off.original_size, off.input_size, off.is_image_set = embed, (size, size), (1024, 1024), True
        pts, lab = np.array([[size * 0.4, size * 0.55]]), np.array([1])
        with torch.inference_mode():
            t_ours = median_time(lambda: pred.predict(points=pts, labels=lab), repeats=20, warmup=3)
            t_off = median_time(lambda: off.predict(point_coords=pts, point_labels=lab), repeats=20, warmup=3)
        lines.append(f"| click -> 3 masks at {size}x{size} (cached embedding) | {t_off * 1e3:.1f} ms | "
                     f"{t_ours * 1e3:.1f} ms | {t_ours / t_off:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
