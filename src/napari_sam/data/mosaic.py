"""Large generated images: mosaics of the generator's nuclei scenes, with instance labels.

Rendering one 4,096² scene object by object takes minutes; a mosaic repeats a few distinct
scenes (each flipped / transposed differently per place) side by side, which is fast and still
puts objects across every tile border a tiling draws. The labels of each placed scene are
renumbered, so every object has its own id. Objects cut by a scene edge stay cut (they are
what an image border would show), and their ids stay apart.
"""

from __future__ import annotations

import numpy as np

from .synthetic import Population, Sample, nuclei_2d


def mosaic(shape=(2048, 2048), scene=512, distinct=4, seed=0, diameter=(15, 30), density=0.3,
           dtype="uint16") -> Sample:
    """A ``shape`` image of ``scene``-px nuclei scenes (``distinct`` different ones, repeated
    with flips); nuclei ``diameter`` (min, max) px; ``density`` the covered area fraction."""
    h, w = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    lo, hi = diameter
    radius = (lo + hi) / 4.0
    spread = (hi - lo) / (lo + hi) / 2.0
    n = max(1, int(density * scene * scene / (np.pi * radius**2)))
    pop = Population(radius=radius, radius_sd=spread)
    scenes = [nuclei_2d((scene, scene), n_objects=n, seed=int(rng.integers(2**31)), dtype=dtype, population=pop)
              for _ in range(max(1, int(distinct)))]
    image = np.zeros((h, w), dtype=scenes[0].image.dtype)
    labels = np.zeros((h, w), np.int32)
    next_id = 0
    for y in range(0, h, scene):
        for x in range(0, w, scene):
            s = scenes[int(rng.integers(len(scenes)))]
            img, lab = s.image, s.labels
            k = int(rng.integers(8))
            if k & 1:
                img, lab = img[::-1], lab[::-1]
            if k & 2:
                img, lab = img[:, ::-1], lab[:, ::-1]
            if k & 4:
                img, lab = img.T, lab.T
            ph, pw = min(scene, h - y), min(scene, w - x)
            image[y:y + ph, x:x + pw] = img[:ph, :pw]
            part = lab[:ph, :pw]
            ids = np.unique(part[part > 0])
            lut = np.zeros(int(lab.max()) + 1, np.int32)
            lut[ids] = np.arange(next_id + 1, next_id + 1 + len(ids), dtype=np.int32)
            labels[y:y + ph, x:x + pw] = lut[part]
            next_id += len(ids)
    return Sample(image, labels, (1.0, 1.0), "yx", name=f"nuclei mosaic {h}x{w}")
