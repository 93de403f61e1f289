"""Seeded training examples from :mod:`napari_sam.data.synthetic` or :mod:`napari_sam.data.realistic`.

An image example is one 2D scene; a clip is ``length`` consecutive frames of a time-lapse or
of a z-stack (either direction). Images are mapped to 8-bit RGB like the engine does
(:func:`~napari_sam.engine.image.preprocess.to_uint8_rgb`, robust percentiles or jittered limits),
flipped / rotated at random, and preprocessed as the inference paths preprocess them.
Labels are resized (nearest) to the model input size for the losses.

``generator`` picks the scenes: "synthetic" (the generator the bundled model was trained on;
the default, unchanged), "realistic" (domain-randomised, looks like real microscopy) or "mix"
(half and half, chosen per seed by a draw of its own, so a mix's synthetic examples equal the
"synthetic" ones of the same seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import realistic, synthetic
from ..engine.image.preprocess import (
    estimate_contrast_limits,
    preprocess_sam2_image,
    preprocess_sam2_video,
    to_uint8_rgb,
)


GENERATORS = ("synthetic", "realistic", "mix")


@dataclass
class Example:
    """``images`` (T, 3, S, S) preprocessed; ``labels`` (T, S, S) int64 instance labels."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    num_frames: int = 1  # length of the video the clip came from (pointer normalisation)


def _augment(rng: np.random.Generator, stack: np.ndarray, labels: np.ndarray):
    """Same random flip / 90-degree rotation for every frame of (T, H, W) arrays."""
    k = int(rng.integers(4))
    stack, labels = np.rot90(stack, k, axes=(1, 2)), np.rot90(labels, k, axes=(1, 2))
    if rng.random() < 0.5:
        stack, labels = stack[:, :, ::-1], labels[:, :, ::-1]
    return np.ascontiguousarray(stack), np.ascontiguousarray(labels)


def _limits(rng: np.random.Generator, stack: np.ndarray):
    """Robust contrast limits of the stack, sometimes jittered (users set their own)."""
    lo, hi = estimate_contrast_limits(stack)
    if rng.random() < 0.5:
        span = max(hi - lo, 1e-6)
        lo, hi = lo + rng.uniform(-0.1, 0.2) * span, hi + rng.uniform(-0.3, 0.3) * span
    return lo, max(hi, lo + 1e-6)


def _to_example(rng, stack, labels, size, video, source, num_frames=1) -> Example:
    stack, labels = _augment(rng, stack, labels)
    limits = _limits(rng, stack)
    pre = preprocess_sam2_video if video else preprocess_sam2_image
    images = torch.cat([pre(to_uint8_rgb(f, limits), size) for f in stack])
    lab = torch.from_numpy(labels.astype(np.int64))[:, None].float()
    lab = F.interpolate(lab, size=(size, size), mode="nearest")[:, 0].long()
    return Example(images, lab, source, num_frames)


def _image_plan(rng: np.random.Generator) -> tuple[str, int]:
    kind = rng.choice(["scene", "nuclei", "timelapse", "zslice"], p=[0.45, 0.2, 0.2, 0.15])
    return str(kind), int(rng.integers(2**31))


def _realistic_plan(rng: np.random.Generator) -> tuple[str, int]:
    kind = rng.choice(["real_scene", "real_timelapse", "real_zslice"], p=[0.6, 0.2, 0.2])
    return str(kind), int(rng.integers(2**31))


def pick_generator(seed: int, generator: str = "synthetic") -> str:
    """"synthetic" or "realistic": what ``generator`` means for the example of ``seed``."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}: use one of {', '.join(GENERATORS)}")
    if generator == "mix":
        return "realistic" if np.random.default_rng([seed, 14]).random() < 0.5 else "synthetic"
    return generator


def generator_seeds(seed: int, clip: bool, generator: str = "synthetic") -> int:
    """The seed :func:`image_example` / :func:`clip_example` passes to the generator."""
    realistic_ = pick_generator(seed, generator) == "realistic"
    rng = np.random.default_rng(seed)
    if clip:
        return int(rng.integers(2**31))
    return (_realistic_plan(rng) if realistic_ else _image_plan(rng))[1]


def image_example(seed: int, size: int = 256, generator: str = "synthetic") -> Example:
    """One 2D scene: a random scene, a nuclei image, a time-lapse frame or a z-slice (of the
    ``generator``: "synthetic", "realistic" or "mix")."""
    if pick_generator(seed, generator) == "realistic":
        return _realistic_image_example(seed, size)
    rng = np.random.default_rng(seed)
    kind, sub = _image_plan(rng)
    if kind == "scene":
        s = synthetic.random_scene(sub)
        stack, labels = s.image[None], s.labels[None]
    elif kind == "nuclei":
        s = synthetic.nuclei_2d(n_objects=int(rng.integers(10, 60)), seed=sub)
        stack, labels = s.image[None], s.labels[None]
    elif kind == "timelapse":
        n = int(rng.integers(1, 12))
        s = synthetic.timelapse(n_frames=n, n_objects=int(rng.integers(8, 24)), seed=sub)
        stack, labels = s.image[-1:], s.labels[-1:]
    else:
        s = synthetic.nuclei_3d(n_objects=int(rng.integers(12, 32)), seed=sub)
        z = int(rng.integers(6, s.image.shape[0] - 6))
        stack, labels = s.image[z : z + 1], s.labels[z : z + 1]
    return _to_example(rng, stack, labels, size, video=False, source=str(kind))


def _realistic_image_example(seed: int, size: int) -> Example:
    rng = np.random.default_rng(seed)
    kind, sub = _realistic_plan(rng)
    if kind == "real_scene":
        s = realistic.realistic_image(sub)
        stack, labels = s.image[None], s.labels[None]
    elif kind == "real_timelapse":
        s = realistic.realistic_timelapse(sub, n_frames=int(rng.integers(1, 12)))
        stack, labels = s.image[-1:], s.labels[-1:]
    else:
        s = realistic.realistic_zstack(sub)
        z = int(rng.integers(0, s.image.shape[0]))
        stack, labels = s.image[z : z + 1], s.labels[z : z + 1]
    return _to_example(rng, stack, labels, size, video=False, source=kind)


def clip_example(seed: int, length: int = 6, size: int = 256, p_timelapse: float = 0.55,
                 generator: str = "synthetic") -> Example:
    """``length`` consecutive frames: a time-lapse (forward or backward, share
    ``p_timelapse``) or a z-stack walked up or down from a random slice (of the
    ``generator``). Realistic z-stacks have objects that end inside the clip."""
    if pick_generator(seed, generator) == "realistic":
        return _realistic_clip_example(seed, length, size, p_timelapse)
    rng = np.random.default_rng(seed)
    sub = int(rng.integers(2**31))
    if rng.random() < p_timelapse:
        n = int(rng.integers(length, length + 8))
        s = synthetic.timelapse(n_frames=n, n_objects=int(rng.integers(8, 24)), seed=sub,
                                speed=float(rng.uniform(0.6, 2.0)))
        start = int(rng.integers(0, n - length + 1))
        stack, labels = s.image[start : start + length], s.labels[start : start + length]
        source, total = "timelapse", 30
    else:
        s = synthetic.nuclei_3d(n_objects=int(rng.integers(12, 32)), seed=sub,
                                z_step=float(rng.uniform(1.5, 3.0)))
        depth = s.image.shape[0]
        start = int(rng.integers(0, depth - length + 1))
        stack, labels = s.image[start : start + length], s.labels[start : start + length]
        source, total = "zstack", depth
    if rng.random() < 0.5:
        stack, labels = stack[::-1], labels[::-1]
    return _to_example(rng, stack, labels, size, video=True, source=source, num_frames=total)


def _realistic_clip_example(seed: int, length: int, size: int, p_timelapse: float) -> Example:
    rng = np.random.default_rng(seed)
    sub = int(rng.integers(2**31))
    if rng.random() < p_timelapse:
        n = int(rng.integers(length, length + 8))
        s = realistic.realistic_timelapse(sub, n_frames=n)
        start = int(rng.integers(0, n - length + 1))
        source, total = "timelapse", 30
    else:
        depth = max(length + 10, 16)
        s = realistic.realistic_zstack(sub, shape=(depth, 160, 160))
        start = int(rng.integers(0, depth - length + 1))
        source, total = "zstack", depth
    stack, labels = s.image[start : start + length], s.labels[start : start + length]
    if rng.random() < 0.5:
        stack, labels = stack[::-1], labels[::-1]
    return _to_example(rng, stack, labels, size, video=True, source=source, num_frames=total)
