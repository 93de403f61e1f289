"""Train the embedded SAM 2 model on synthetic microscopy (seeded, resumable, CPU-friendly).

    nice -n 15 python scripts/train_embedded.py --out runs/embedded --iterations 400 --threads 2
    # then copy runs/embedded/weights.pt to src/napari_sam/weights/embedded.pt

Re-running with the same ``--out`` resumes from its checkpoint. See docs/embedded_model.md.

    python scripts/train_embedded.py --evaluate runs/embedded/weights.pt   # held-out figures
    python scripts/train_embedded.py --curve runs/embedded/log.jsonl       # training-curve table
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields

import numpy as np

import torch

from napari_sam.models.sam2 import build_sam2
from napari_sam.training.data import GENERATORS
from napari_sam.training.init import localize_memory_attention, tie_cross_attention
from napari_sam.training.loop import Recipe, train
from napari_sam.weights import embedded_config, load_embedded


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/embedded")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the recipe is the same; a GPU runs it faster)")
    ap.add_argument("--workers", type=int, default=0, help="processes that make the data ahead (0: in line)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also keep weights_<it>.pt every n iterations")
    ap.add_argument("--generator", choices=GENERATORS, default="synthetic",
                    help="training scenes: synthetic (the shipped recipe), realistic (looks like real "
                         "microscopy, napari_sam.data.realistic) or mix (half each, per seed)")
    for f in fields(Recipe):
        if f.name == "generator":
            continue  # the flag above
        if isinstance(f.default, bool):
            ap.add_argument("--" + f.name.replace("_", "-"), action="store_true")
        else:
            ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    ap.add_argument("--init-from", metavar="WEIGHTS",
                    help="start from these weights (a later stage of a recipe; the optimiser starts afresh)")
    ap.add_argument("--localize-memory", type=float, default=0.0, metavar="AMPLITUDE",
                    help="memory cross-attention looks at its own place first: shared q/k biases on the "
                         "fast rotary pairs (training.init.localize_memory_attention; 5.7 in the recipe)")
    ap.add_argument("--evaluate", metavar="WEIGHTS", help="print held-out figures of a weights file")
    ap.add_argument("--curve", metavar="LOG", help="print the training curve of a log.jsonl as a table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate:
        return evaluate(args.evaluate)
    if args.curve:
        return curve(args.curve)
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe)})
    torch.manual_seed(recipe.seed)
    if args.init_from:
        model = load_embedded(args.init_from)
    else:
        model = build_sam2(embedded_config())
        tie_cross_attention(model)
    if args.localize_memory:
        localize_memory_attention(model, args.localize_memory)
    model.to(args.device)
    # a resumed run loads its checkpoint over all of this
    train(model, recipe, args.out, log=lambda s: print(s, flush=True), workers=args.workers,
          snapshot_every=args.snapshot_every)



def evaluate(path) -> None:
    from napari_sam.training import evaluate as ev

    model = load_embedded(path)
    print(json.dumps(ev.click_and_box_iou(model)), flush=True)
    print("timelapse", json.dumps(asdict(ev.timelapse_quality(model))), flush=True)
    print("zstack", json.dumps(asdict(ev.zstack_quality(model))), flush=True)


def curve(path, every: int = 20) -> None:
    """Markdown table: means over blocks of ``every`` iterations."""
    rows = [json.loads(line) for line in open(path)]
    keys = ["loss", "r0_iou", "r1_iou", "f0_iou", "track_iou", "track_obj_acc"]
    print("| iterations | minutes | lr | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 3) + "|")
    for i in range(0, len(rows), every):
        block = rows[i : i + every]
        vals = [np.mean([r[k] for r in block if k in r]) if any(k in r for r in block) else float("nan") for k in keys]
        print(f"| {block[0]['it']}-{block[-1]['it']} | {block[-1]['sec'] / 60:.0f} | {block[-1]['lr']:.1e} | "
              + " | ".join(f"{v:.3f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
