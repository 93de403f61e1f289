"""Train the embedded SAM 2 model on synthetic microscopy (seeded, resumable, CPU-friendly).

    nice -n 15 python scripts/train_embedded.py --out runs/embedded --iterations 400 --threads 2
    # then copy runs/embedded/weights.pt to src/napari_sam/weights/embedded.pt

Re-running with the same ``--out`` resumes from its checkpoint. See docs/embedded_model.md.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import torch

from napari_sam.models.sam2 import build_sam2
from napari_sam.training.loop import Recipe, train
from napari_sam.weights import embedded_config


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/embedded")
    ap.add_argument("--threads", type=int, default=2)
    for f in fields(Recipe):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe)})
    torch.manual_seed(recipe.seed)
    model = build_sam2(embedded_config())
    train(model, recipe, args.out, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
