"""The seeded, resumable training loop of the embedded model.

Each iteration is one image-path step, plus one video-path step every ``video_every``
iterations from ``video_start`` on (their losses summed). With ``freeze_image_encoder`` the
image encoder keeps its weights (forward only: cheaper steps), for a stage that trains
the memory path and the decoder on features that are already good.
Data seeds are ``1_000_000 + 10 * iteration + k`` (training) — the held-out sets use
seeds below 1_000 (see :mod:`.evaluate`), so they never meet. AdamW, linear warm-up then
cosine decay, gradient clipping. A checkpoint (model + optimiser + RNG state) is written
every ``checkpoint_every`` iterations; a run resumes from it and continues identically.
The data of an iteration depend on its seeds alone, so ``workers`` processes may make them
ahead (a GPU step is faster than one CPU core's data) without changing the run.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import data
from .steps import image_step, video_step

TRAIN_SEED_BASE = 1_000_000


@dataclass
class Recipe:
    iterations: int = 400
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 25
    weight_decay: float = 0.01
    clip: float = 1.0
    images_per_step: int = 2
    objects_per_image: int = 8
    rounds: int = 3
    clip_length: int = 4
    clip_objects: int = 3
    p_timelapse: float = 0.55  # share of clips from time-lapses (the rest: z-stacks)
    p_both_ways: float = 0.0  # share of clips prompted on their middle frame, tracked forward then backward
    video_every: int = 2  # a video-path step on every n-th iteration ...
    video_start: int = 0  # ... from this iteration on (image path alone before)
    seed: int = 0
    checkpoint_every: int = 20
    freeze_image_encoder: bool = False  # train only what follows the image encoder (a later stage)
    p_box: float = 0.3  # share of image-path prompt sets that start from a box
    multimask_trains_only_best: bool = False  # single clicks: train the best of tokens 1-3, not token 0
    full_res_loss: bool = False  # mask losses on logits upsampled to the input size (as inference thresholds)
    plain_bce: float = 0.0  # > 0: plain BCE with this weight instead of class-balanced BCE (a later stage)
    generator: str = "synthetic"  # training scenes: "synthetic" | "realistic" | "mix" (data.GENERATORS)


def lr_at(recipe: Recipe, it: int) -> float:
    if it < recipe.warmup:
        return recipe.lr * (it + 1) / recipe.warmup
    p = (it - recipe.warmup) / max(1, recipe.iterations - recipe.warmup)
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def save_weights(model, path: Path, meta: dict) -> None:
    """The shipped format: float16 state dict + config + meta."""
    sd = {k: (v.half() if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(model.config).items()}
    torch.save({"model": sd, "config": cfg, "meta": meta}, path)


def _has_video(recipe: Recipe, it: int) -> bool:
    return it >= recipe.video_start and (it + 1) % recipe.video_every == 0


def iteration_data(recipe: Recipe, it: int, size: int):
    """``(image examples, clip or None)`` of iteration ``it`` — a function of the seeds alone."""
    base = TRAIN_SEED_BASE + 10 * it + 100_000_000 * recipe.seed
    exs = [data.image_example(base + k, size, generator=recipe.generator) for k in range(recipe.images_per_step)]
    clip = (data.clip_example(base + 9, recipe.clip_length, size, recipe.p_timelapse, generator=recipe.generator)
            if _has_video(recipe, it) else None)
    return exs, clip


def _worker_init() -> None:
    torch.set_num_threads(1)


def _data_stream(recipe: Recipe, start: int, size: int, workers: int):
    """Iteration data in order, made by ``workers`` spawned processes (0: here, lazily)."""
    jobs = ((recipe, it, size) for it in range(start, recipe.iterations))
    if workers <= 0:
        yield from itertools.starmap(iteration_data, jobs)
        return
    with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        ahead = deque(pool.apply_async(iteration_data, j) for j in itertools.islice(jobs, 4 * workers))
        while ahead:
            yield ahead.popleft().get()
            ahead.extend(pool.apply_async(iteration_data, j) for j in itertools.islice(jobs, 1))


def train(model, recipe: Recipe, out_dir: Path, log=print, workers: int = 0, snapshot_every: int = 0) -> None:
    """Train ``model`` in place (on the device its parameters are on); ``out_dir`` gets
    ``checkpoint.pt``, ``log.jsonl``, ``weights.pt`` (and ``weights_<it>.pt`` every
    ``snapshot_every`` iterations)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    for p in model.image_encoder.parameters():
        p.requires_grad_(not recipe.freeze_image_encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    start = 0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=model.device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start = int(ck["iteration"])
        log(f"resumed at iteration {start}")
    model.train()
    t0 = time.time()
    with open(out_dir / "log.jsonl", "a") as logf:
        stream = _data_stream(recipe, start, model.image_size, workers)
        for it, (exs, clip) in zip(range(start, recipe.iterations), stream):
            torch.manual_seed(recipe.seed * 7919 + it)
            rng = np.random.default_rng([recipe.seed, it])
            for group in opt.param_groups:
                group["lr"] = lr_at(recipe, it)
            opt.zero_grad(set_to_none=True)
            token0, full = not recipe.multimask_trains_only_best, recipe.full_res_loss
            loss_i, st_i = image_step(model, exs, rng, recipe.objects_per_image, recipe.rounds, recipe.p_box, token0,
                                      full_res=full, plain_bce=recipe.plain_bce)
            loss_v, st_v, source = None, {}, "-"
            if clip is not None:
                both = recipe.p_both_ways > 0 and rng.random() < recipe.p_both_ways
                mid = clip.images.shape[0] // 2 if both else 0
                loss_v, st_v = video_step(model, clip, rng, recipe.clip_objects, token0_on_multimask=token0,
                                          start=mid, full_res=full, plain_bce=recipe.plain_bce)
                source = clip.source
            loss = sum(x for x in (loss_i, loss_v) if x is not None)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, recipe.clip))
            opt.step()
            rec = {"it": it + 1, "lr": lr_at(recipe, it), "loss": float(loss.detach()), "gnorm": gnorm,
                   "sec": round(time.time() - t0, 1), "clip": source, **st_i, **st_v}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                         if k in ("it", "loss", "lr", "sec", "r0_iou", "r2_iou", "f0_iou", "track_iou", "track_obj_acc", "clip")))
            if (it + 1) % recipe.checkpoint_every == 0 or it + 1 == recipe.iterations:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it + 1},
                           out_dir / "checkpoint.tmp")
                (out_dir / "checkpoint.tmp").replace(ckpt_path)
                save_weights(model, out_dir / "weights.pt", {"iteration": it + 1, "recipe": asdict(recipe)})
            if snapshot_every and (it + 1) % snapshot_every == 0:
                save_weights(model, out_dir / f"weights_{it + 1}.pt", {"iteration": it + 1, "recipe": asdict(recipe)})
    model.eval()
