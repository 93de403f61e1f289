"""A generator that looks like real fluorescence microscopy (domain randomisation).

The same structures as :mod:`napari_sam.data.synthetic` (a :class:`~.synthetic.Sample` with
image, instance labels, scale, axes, and lineage / tracks for time-lapses), so training and
evaluation switch generators by name, but every scene draws its own look:

* objects: nuclei or whole cells, round, elongated, lobed, irregular or mitotic (condensed
  plates, anaphase pairs), 6-80 px across at the image's own scale, sparse or in dense
  touching clusters; domed or flat, uneven and dim ones, chromatin texture, nucleoli and
  chromocentres;
* microscope: lateral and axial PSF, objects out of focus, field curvature, haze, uneven
  background and illumination, vignetting, unlabelled debris, fibres and out-of-focus nuclei
  of other planes;
* camera: Poisson-Gaussian noise down to low SNR, gain and offset, 8, 12 or 16 bit, the
  range used from a sliver of it to saturation;
* z-stacks with 1.5-5x coarser z whose objects start and end inside the stack; time-lapses
  with divisions (mitotic rounding, parent links), cells entering and leaving.

Seeded and deterministic; vectorised (a 256² scene takes tens of milliseconds). The
existing :mod:`.synthetic` functions are untouched (their seeds feed other evaluations).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ._realistic_motion import simulate
from ._realistic_optics import DEPTHS, Imaging, acquire, compose, debris, draw_imaging, illumination, texture_bank
from ._realistic_shapes import Objects, place
from ._realistic_style import Style, candidate_radii, count_for, draw_objects, draw_style, ghost_objects
from .synthetic import Sample

__all__ = ["Imaging", "Style", "realistic_image", "realistic_scene", "realistic_timelapse", "realistic_zstack"]

BIT_DEPTH = {"uint8": 8, "uint12": 12, "uint16": 16}


def _check_shape(shape, ndim: int, minimum: int = 16) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be {ndim} integers, got {shape!r}") from None
    if len(shape) != ndim or min(shape) < (1 if ndim == 3 else minimum):
        raise ValueError(f"shape must be {ndim} sizes (in-plane >= {minimum} px), got {shape!r}")
    if ndim == 3 and min(shape[1:]) < minimum:
        raise ValueError(f"shape must have in-plane sizes >= {minimum} px, got {shape!r}")
    return shape


def _pick_imaging(rng, depth):
    im = draw_imaging(rng)
    if depth is not None:
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        im.depth = depth
    return im


def realistic_scene(seed=0, shape=(256, 256), kind=None, diameter=None, depth=None) -> Sample:
    """One 2D image ("yx"): nuclei or whole cells (``kind``, default random), median
    ``diameter`` in pixels (default random, 6-80), bit ``depth`` "uint8" | "uint12" |
    "uint16" (default random; "uint12" is a uint16 array with values <= 4095)."""
    rng = np.random.default_rng(seed)
    shape = _check_shape(shape, 2)
    style = draw_style(rng, kind, diameter)
    im = _pick_imaging(rng, depth)
    area = float(shape[0] * shape[1])
    n = count_for(style, area, style.diameter / 2.0)
    radius = candidate_radii(rng, style, 3 * n + 8)
    keep, centers = place(rng, n, shape, radius, style.touching, style.cluster, margin=0.04)
    objs = draw_objects(rng, style, centers, radius[keep])
    n_ghost = int(rng.poisson(style.ghosts * 0.3 * n)) if style.kind == "nuclei" else 0
    ghosts = ghost_objects(rng, style, shape, n_ghost) if n_ghost else None
    labels, signal, dropped = compose(rng, objs, style, im, shape, texture_bank(rng), ghosts)
    gain, bg = illumination(rng, shape, im)
    image = acquire(rng, signal[0] * gain, bg, im)
    extra = _extra(style, im, objs, labels, dropped)
    return Sample(image, labels[0], (1.0, 1.0), "yx", name=f"realistic {style.kind}", extra=extra)


def realistic_image(seed=0, shape=(256, 256), kind=None, diameter=None, depth=None) -> Sample:
    """Alias of :func:`realistic_scene` (the name of the 2D generator)."""
    return realistic_scene(seed, shape, kind, diameter, depth)


def realistic_zstack(seed=0, shape=(32, 160, 160), z_step=None, diameter=None, depth=None) -> Sample:
    """A z-stack ("zyx") of nuclei, voxels ``z_step`` (default random 1.5-5) times deeper than
    wide; nuclei start and end inside the stack (a few are cut by its top or bottom)."""
    rng = np.random.default_rng(seed)
    shape = _check_shape(shape, 3)
    if z_step is None:
        z_step = float(rng.uniform(1.5, 5.0))
    elif not (np.isfinite(z_step) and z_step > 0):
        raise ValueError(f"z_step must be a positive number, got {z_step!r}")
    if diameter is None:
        diameter = float(np.exp(rng.uniform(np.log(10.0), np.log(45.0))))
    style = draw_style(rng, "nuclei", diameter)
    style.ghosts = 0.0  # a stack has its other planes
    im = _pick_imaging(rng, depth)
    depth_phys = shape[0] * z_step
    flat = rng.uniform(0.5, 0.9)  # nuclei are flatter along z than across
    r_mean = style.diameter / 2.0
    volume = depth_phys * shape[1] * shape[2]
    n = max(1, int(style.density * 0.6 * volume / (4.0 / 3.0 * np.pi * r_mean**3 * flat)))
    radius = candidate_radii(rng, style, 3 * n + 8)
    extent = (depth_phys, shape[1], shape[2])
    keep, pts = place(rng, n, extent, radius, style.touching, style.cluster, margin=0.03, zscale=flat)
    objs = draw_objects(rng, style, pts[:, 1:], radius[keep], allow_pairs=False)
    objs.zc = pts[:, 0]
    objs.zh = np.maximum(radius[keep] * flat * rng.uniform(0.85, 1.15, len(keep)), 0.6 * z_step)
    objs.tilt = rng.normal(0.0, 0.12, (len(keep), 2))
    labels, signal, dropped = compose(rng, objs, style, im, shape[1:], texture_bank(rng), n_slices=shape[0], z_step=z_step)
    signal *= np.exp(-im.attenuation * np.arange(shape[0]) * z_step)[:, None, None].astype(np.float32)
    gain, bg = illumination(rng, shape[1:], im)
    image = acquire(rng, signal * gain, bg[None], im)
    extra = _extra(style, im, objs, labels, dropped)
    extra["z_step"] = float(z_step)
    return Sample(image, labels, (float(z_step), 1.0, 1.0), "zyx", name="realistic nuclei 3D", extra=extra)


def realistic_timelapse(seed=0, n_frames=30, shape=(256, 256), n_objects=None, diameter=None, depth=None,
                        speed=None, division_time=(25, 80), enter_rate=0.15, bleach=None, mitosis_frames=2) -> Sample:
    """A 2D time-lapse ("tyx") of nuclei that move, deform, divide (mitotic rounding, then two
    new labels with ``lineage[daughter] = mother``), enter and leave the field, while the dye
    bleaches. ``tracks``: Cell-Tracking-Challenge rows (label, first, last, parent), the
    parent only where the mother was in view the frame before (as :func:`.synthetic.timelapse`)."""
    rng = np.random.default_rng(seed)
    shape = _check_shape(shape, 2)
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if diameter is None:
        diameter = float(np.exp(rng.uniform(np.log(10.0), np.log(40.0))))
    style = draw_style(rng, "nuclei", diameter)
    mix = np.asarray(style.shape_mix)
    style.shape_mix = tuple(float(v) for v in np.append(mix[:4] / mix[:4].sum(), 0.0))  # mitosis comes from the cycle
    style.defocus_share = 0.0
    im = _pick_imaging(rng, depth)
    if n_objects is None:
        n_objects = count_for(style, 0.8 * shape[0] * shape[1], style.diameter / 2.0)
    speed = float(rng.uniform(0.4, 2.0)) if speed is None else float(speed)
    bleach = float(rng.uniform(0.0, 0.02)) if bleach is None else float(bleach)
    drift = rng.normal(0.0, 0.3, 2)
    frames, lineage = simulate(rng, style, int(n_frames), shape, int(n_objects), speed, drift, division_time,
                               enter_rate, mitosis_frames)
    bank = texture_bank(rng)
    n_ghost = int(rng.poisson(style.ghosts * 0.3 * n_objects))
    ghosts = ghost_objects(rng, style, shape, n_ghost) if n_ghost else None
    specks = debris(rng, (1,) + shape, style.debris)
    gain, bg = illumination(rng, shape, im)
    labels = np.zeros((int(n_frames),) + shape, np.int32)
    image = np.zeros((int(n_frames),) + shape, DEPTHS[im.depth][0])
    top = None
    for t, objs in enumerate(frames):
        lab, signal, _ = compose(rng, objs, style, im, shape, bank, ghosts, specks)
        labels[t] = lab[0]
        signal = signal[0] * gain * np.float32(np.exp(-bleach * t) * (1.0 + rng.normal(0.0, 0.02)))
        if top is None:  # one camera gain for the whole movie: bleaching shows
            top = float(np.percentile((signal + bg) * im.photons, 99.9))
        image[t] = acquire(rng, signal, bg, im, top)
    tracks = track_rows(labels, lineage)
    extra = _extra(style, im, Objects.concat(frames), labels, 0)
    return Sample(image, labels, (1.0, 1.0, 1.0), "tyx", name="realistic time-lapse",
                  lineage={int(r[0]): int(r[3]) for r in tracks}, tracks=tracks, extra=extra)


def track_rows(labels: np.ndarray, lineage: dict[int, int]) -> np.ndarray:
    """(n, 4) rows (label, first frame, last frame, parent) of a (T, H, W) label movie; the
    parent is kept only if it was in view on the frame before the daughter's first."""
    present = [np.unique(f[f > 0]) for f in labels]
    ids = np.unique(np.concatenate(present)) if present else np.zeros(0, int)
    first = {int(i): -1 for i in ids}
    last = {}
    for t, p in enumerate(present):
        for i in p.tolist():
            if first[i] < 0:
                first[i] = t
            last[i] = t
    rows = []
    for i in ids.tolist():
        mom = lineage.get(i, 0)
        ok = mom in last and last[mom] == first[i] - 1
        rows.append((i, first[i], last[i], mom if ok else 0))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _extra(style: Style, im: Imaging, objs: Objects, labels: np.ndarray, dropped: int) -> dict:
    return {
        "style": asdict(style),
        "imaging": asdict(im),
        "bit_depth": BIT_DEPTH[im.depth],
        "diameters": {int(lab): float(2 * r) for lab, r in zip(objs.label, objs.radius)},
        "dropped_pixels": int(dropped),
    }
