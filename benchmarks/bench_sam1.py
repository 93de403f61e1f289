"""SAM 1 vit_b: our image encoder vs the official one, and click-to-mask latency.

Side by side in one process, same random weights, CPU fp32, 1024x1024 input; medians after
a warm-up, runs interleaved. Click latency = ImagePredictor.predict on a cached embedding:
prompt encoder + mask decoder + upscaling the 3 masks to the original image size (the two
shares measured on their own as well). Allocator tuning (engine/malloc_tuning.py) is opted in
first, as the CLI and the widget may.

    python benchmarks/bench_sam1.py [--repeats 3] [--threads 2] [--note "shared machine"]

Writes ``benchmarks/results/sam1.md`` and ``sam1.json`` (every median, the load average at
the start and the end, and the note).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import interleaved, load_average, machine

import napari_sam as ns
from napari_sam.engine.malloc_tuning import tune_malloc
from napari_sam.models.sam1 import Sam1Config, build_sam1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sam1.md"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--note", default="", help="written into the results, e.g. that the machine was shared")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    record = {"machine": machine(), "note": args.note, "load_average_start": load_average(), "encoder_repeats": args.repeats}
    tune_malloc()  # opt in to the allocator settings the CLI / widget use (engine/malloc_tuning.py)
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
    record["encoder_s"] = {**enc, "ratio": enc["ours"] / enc["official"]}

    with torch.inference_mode():
        embed = ours.encode_image(x)["image_embed"]
    for size in (1024, 2048):
        pred = ns.ImagePredictor(ours)
        pred.set_embedding({"image_embed": embed}, (size, size))
        off = SamPredictor(ref)  # the same cached embedding, as set_image would leave it
        off.features, off.original_size, off.input_size, off.is_image_set = embed, (size, size), (1024, 1024), True
        pts, lab = np.array([[size * 0.4, size * 0.55]]), np.array([1])
        tf = pred.transform
        coords = tf.points_to_input(pts, (size, size))[None]
        labels = torch.as_tensor(lab)[None]

        def decode():  # the model's share of a click: prompt encoder + mask decoder
            return ours.decode(pred._feats, point_coords=coords, point_labels=labels, image_cache=pred._decoder_cache)[0]

        with torch.inference_mode():
            low = decode()[0]
            t = interleaved({"ours": lambda: pred.predict(points=pts, labels=lab),
                             "official": lambda: off.predict(point_coords=pts, point_labels=lab),
                             "decoder": decode,
                             "upscale": lambda: (tf.upscale(low, (size, size)) > 0).numpy()},
                            repeats=20, warmup=3)
        lines.append(f"| click -> 3 masks at {size}x{size} (cached embedding) | {t['official'] * 1e3:.1f} ms | "
                     f"{t['ours'] * 1e3:.1f} ms | {t['ours'] / t['official']:.2f}x |")
        lines.append(f"| of which: decoder (model.decode) / upscale + threshold to {size}x{size} | | "
                     f"{t['decoder'] * 1e3:.1f} / {t['upscale'] * 1e3:.1f} ms | |")
        record[f"click_{size}_ms"] = {**{k: v * 1e3 for k, v in t.items()}, "ratio": t["ours"] / t["official"],
                                      "repeats": 20, "warmup": 3}
    record["load_average_end"] = load_average()
    if args.note:
        lines.append(f"\nNote: {args.note} (load average {record['load_average_start']} at the start, "
                     f"{record['load_average_end']} at the end).")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
