"""What a realistic scene's objects look like: a randomised :class:`Style` per scene and the
objects drawn from it (domain randomisation). Sizes are diameters in pixels at the image's
own scale, 6-80 px; see docs/embedded_model.md, "Realistic generator"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._realistic_shapes import CELL, MITOTIC, NUCLEUS, SPOTS, Objects, outline_harmonics

MIN_DIAMETER, MAX_DIAMETER = 6.0, 80.0
ROUND, ELONGATED, LOBED, IRREGULAR, DIVIDING = range(5)


@dataclass
class Style:
    kind: str = "nuclei"  # "nuclei" | "cells" (cytoplasm stain, whole-cell labels)
    diameter: float = 20.0  # median object diameter, pixels
    size_sd: float = 0.2  # log-normal spread of diameters
    density: float = 0.3  # share of the area (volume in stacks) the objects cover
    cluster: float = 0.3  # share of objects placed in clusters
    touching: float = 0.3  # how far neighbours may overlap (share of their radii)
    shape_mix: tuple = (0.5, 0.2, 0.15, 0.15, 0.0)  # round, elongated, lobed, irregular, mitotic
    max_elong: float = 2.5
    irregularity: float = 0.3
    bright_sd: float = 0.3  # log-normal spread of object brightness
    dim_share: float = 0.1  # share of objects 2-4x dimmer
    dome: float = 0.3
    rim: float = 0.1
    gradient: float = 0.15  # uneven staining across an object
    texture: float = 0.2  # chromatin texture amplitude
    tex_scale: float = 1.0  # grain size (x ~2 px)
    spot_rate: float = 0.4  # chance of each of the SPOTS nucleoli / chromocentres
    spot_bright: float = 0.3  # share of bright spots (chromocentres) among them
    defocus_share: float = 0.1  # share of objects out of focus
    debris: float = 0.5  # amount of unlabelled specks and fibres
    ghosts: float = 0.3  # unlabelled out-of-focus nuclei (from other planes)


def _log_uniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_style(rng, kind: str | None = None, diameter: float | None = None) -> Style:
    """A random style; ``kind`` / ``diameter`` fix those draws."""
    if kind is None:
        kind = "cells" if rng.random() < 0.25 else "nuclei"
    if kind not in ("nuclei", "cells"):
        raise ValueError(f"kind must be 'nuclei' or 'cells', got {kind!r}")
    if diameter is None:
        if kind == "cells":
            diameter = _log_uniform(rng, 18.0, MAX_DIAMETER)
        elif rng.random() < 0.6:  # most nuclei images: 10-36 px nuclei
            diameter = _log_uniform(rng, 10.0, 36.0)
        else:
            diameter = _log_uniform(rng, MIN_DIAMETER, 60.0)
    mitotic = float(rng.uniform(0.0, 0.08)) if (kind == "nuclei" and rng.random() < 0.6) else 0.0
    mix = rng.dirichlet([2.0, 0.8, 0.6, 0.6]) * (1.0 - mitotic)
    dense = rng.random() < 0.35
    return Style(
        kind=kind,
        diameter=float(diameter),
        size_sd=float(rng.uniform(0.05, 0.35)),
        density=float(rng.uniform(0.35, 0.7) if dense else rng.uniform(0.05, 0.4)) * (1.2 if kind == "cells" else 1.0),
        cluster=float(rng.uniform(0.5, 1.0) if dense else rng.uniform(0.0, 0.6)),
        touching=float(rng.uniform(0.2, 0.45) if dense else rng.uniform(0.0, 0.35)),
        shape_mix=tuple(float(v) for v in np.append(mix, mitotic)),
        max_elong=float(rng.uniform(1.6, 3.5)),
        irregularity=float(rng.uniform(0.0, 0.45)),
        bright_sd=float(rng.uniform(0.1, 0.6)),
        dim_share=float(rng.uniform(0.0, 0.25)),
        dome=float(rng.uniform(0.0, 0.5)),
        rim=float(rng.uniform(0.0, 0.4)) if rng.random() < 0.4 else 0.0,
        gradient=float(rng.uniform(0.0, 0.35)),
        texture=float(0.35 * rng.uniform(0.0, 1.0) ** 1.5),
        tex_scale=float(rng.uniform(0.6, 2.5)),
        spot_rate=float(rng.uniform(0.0, 0.7)),
        spot_bright=float(rng.uniform(0.0, 1.0)),
        defocus_share=float(rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else 0.0,
        debris=float(rng.uniform(0.0, 1.5)),
        ghosts=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0,
    )


def candidate_radii(rng, style: Style, n: int) -> np.ndarray:
    """Radii (pixels) of ``n`` objects; diameters stay within 6-80 px."""
    d = style.diameter * rng.lognormal(0.0, style.size_sd, n)
    return np.clip(d, MIN_DIAMETER, MAX_DIAMETER) / 2.0


def count_for(style: Style, area: float, radius: float) -> int:
    """How many objects of ``radius`` cover ``style.density`` of ``area`` (pixels)."""
    return max(1, int(round(style.density * area / (np.pi * radius**2))))


def draw_objects(rng, style: Style, centers: np.ndarray, radius: np.ndarray, first_label: int = 1,
                 allow_pairs: bool = True) -> Objects:
    """Objects at ``centers`` (n, 2) with ``radius`` (n,); labels from ``first_label``. Some
    mitotic objects become anaphase pairs (two labels side by side) if ``allow_pairs``."""
    n = len(radius)
    styles = rng.choice(5, n, p=np.asarray(style.shape_mix) / np.sum(style.shape_mix))
    elong = rng.uniform(1.0, 1.45, n)
    long_ = styles == ELONGATED
    elong[long_] = rng.uniform(1.5, max(style.max_elong, 1.6), long_.sum())
    mit = styles == DIVIDING
    elong[mit] = np.where(rng.random(mit.sum()) < 0.5, rng.uniform(2.2, 4.5, mit.sum()), rng.uniform(1.0, 1.3, mit.sum()))
    radius = np.asarray(radius, float).copy()
    radius[mit] = np.maximum(radius[mit] * rng.uniform(0.55, 0.8, mit.sum()), MIN_DIAMETER / 2.0)
    brightness = rng.lognormal(0.0, style.bright_sd, n)
    brightness[rng.random(n) < style.dim_share] *= rng.uniform(0.25, 0.5)
    brightness[mit] *= rng.uniform(1.8, 4.0, mit.sum())
    kind = np.full(n, CELL if style.kind == "cells" else NUCLEUS, np.int8)
    kind[mit] = MITOTIC
    tex_amp = style.texture * rng.uniform(0.4, 1.6, n)
    tex_amp[mit] = rng.uniform(0.3, 0.8, mit.sum())
    ang = rng.uniform(0, 2 * np.pi, (n, SPOTS))
    rad = 0.55 * np.sqrt(rng.random((n, SPOTS)))
    strength = np.where(rng.random((n, SPOTS)) < style.spot_bright, rng.uniform(0.3, 1.0, (n, SPOTS)), rng.uniform(-0.65, -0.2, (n, SPOTS)))
    strength[rng.random((n, SPOTS)) >= style.spot_rate] = 0.0
    strength[kind != NUCLEUS] = 0.0
    spots = np.stack([rad * np.sin(ang), rad * np.cos(ang), rng.uniform(0.06, 0.18, (n, SPOTS)), strength], axis=-1)
    objs = Objects(
        label=np.zeros(n, np.int32),
        center=np.asarray(centers, float).reshape(n, 2).copy(),
        radius=radius,
        elong=elong,
        angle=rng.uniform(0, 2 * np.pi, n),
        harm=outline_harmonics(rng, styles, style.irregularity),
        kind=kind,
        brightness=brightness,
        dome=rng.uniform(0.0, style.dome, n) if style.dome > 0 else np.zeros(n),
        rim=rng.uniform(0.0, style.rim, n) if style.rim > 0 else np.zeros(n),
        grad=rng.normal(0.0, style.gradient, (n, 2)),
        tex_amp=tex_amp,
        tex_id=rng.integers(0, 4, n),
        tex_off=rng.uniform(0, 64, (n, 2)),
        spots=spots,
        defocus=rng.random(n) < style.defocus_share,
        zc=np.zeros(n),
        zh=np.full(n, np.inf),
        tilt=np.zeros((n, 2)),
    )
    if allow_pairs and mit.any():  # anaphase: the plate splits into two, side by side
        pair = np.flatnonzero(mit & (rng.random(n) < 0.4))
        if pair.size:
            objs.radius[pair] = np.maximum(objs.radius[pair] * 0.8, MIN_DIAMETER / 2.0)
            objs.elong[pair] = rng.uniform(2.5, 4.0, pair.size)
            across = np.stack([np.cos(objs.angle[pair] + np.pi / 2), np.sin(objs.angle[pair] + np.pi / 2)], axis=1)
            shift = (objs.radius[pair] * rng.uniform(0.9, 1.5, pair.size))[:, None] * across[:, ::-1]  # (y, x)
            twin = objs.take(pair)
            objs.center[pair] -= shift
            twin.center = twin.center + shift
            objs = Objects.concat([objs, twin])
    objs.label = np.arange(first_label, first_label + len(objs), dtype=np.int32)
    return objs


def ghost_objects(rng, style: Style, shape2d, n: int) -> Objects:
    """Unlabelled, dim nuclei of other focal planes (rendered out of focus)."""
    radius = candidate_radii(rng, style, n)
    centers = rng.uniform(0, 1, (n, 2)) * np.asarray(shape2d, float)
    ghost = draw_objects(rng, style, centers, radius, allow_pairs=False)
    ghost.brightness = ghost.brightness * rng.uniform(0.05, 0.25, len(ghost))
    ghost.kind[:] = NUCLEUS if style.kind == "nuclei" else CELL
    return ghost
