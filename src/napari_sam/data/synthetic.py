"""Synthetic fluorescence microscopy with instance ground truth (no download).

One generator behind the napari sample data and, later, the training data:

* ``nuclei_2d``  – fluorescent nuclei (touching, textured, varied size/shape/brightness)
* ``cells_2d``   – whole cells: a nuclear channel and a cytoplasmic channel, cell labels
* ``nuclei_3d``  – a z-stack of flattened ellipsoids sampled with anisotropic z
* ``timelapse``  – moving, deforming, dividing cells that enter and leave the field,
  with photobleaching; ground truth labels per frame plus the lineage
* ``random_scene`` – a randomised 2D scene (population, optics, dtype) for training

Every function takes a ``seed`` and is reproducible; every result is a :class:`Sample`
carrying the image, its instance labels and the physical ``scale``. Images go through the
same imaging model (:mod:`._render`): PSF blur, haze, uneven background, Poisson shot
noise, Gaussian read noise and the chosen dtype (uint8, uint16 or float).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ._render import Blob, Optics, acquire, blur, make_blob, render, smooth_field

__all__ = [
    "Optics",
    "Population",
    "Sample",
    "cells_2d",
    "composite_rgb",
    "nuclei_2d",
    "nuclei_3d",
    "random_scene",
    "timelapse",
]


@dataclass
class Population:
    """What the objects look like. Lengths in pixels (in-plane)."""

    kind: str = "nuclei"  # "nuclei" | "cells"
    radius: float = 9.0  # mean radius
    radius_sd: float = 0.2  # relative spread of radii
    elongation: tuple[float, float] = (1.0, 1.7)  # aspect ratio range
    irregularity: float = 0.3  # boundary bumpiness (0 = perfect ellipses)
    brightness_sd: float = 0.35  # log-normal spread of object brightness
    texture: float = 0.25  # chromatin / cytoplasm texture amplitude
    touching: float = 0.3  # how far neighbours may overlap (fraction of radii) -> touching objects


@dataclass
class Sample:
    """An image with its instance ground truth. ``axes`` names the image axes."""

    image: np.ndarray
    labels: np.ndarray  # int32, 0 = background; same spatial shape as the image
    scale: tuple[float, ...]  # physical size of a pixel/voxel per label axis
    axes: str  # "yx" | "cyx" | "zyx" | "tyx"
    name: str = ""
    lineage: dict[int, int] = field(default_factory=dict)  # label -> parent label, 0 = none / divided out of view
    tracks: np.ndarray | None = None  # (n, 4) rows (label, first frame, last frame, parent)
    extra: dict = field(default_factory=dict)


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _radius(rng, pop: Population) -> float:
    return float(pop.radius * np.clip(rng.normal(1.0, pop.radius_sd), 0.5, 1.8))


def _brightness(rng, pop: Population) -> float:
    return float(np.exp(rng.normal(0.0, pop.brightness_sd)))


def _place(rng, n, extent, pop: Population, margin=0.0, tries=60) -> list[tuple[np.ndarray, float]]:
    """Up to ``n`` (centre, radius) pairs in a box of physical ``extent``, allowing overlap
    of at most ``pop.touching`` of the radii (so some neighbours touch, none swallows another)."""
    extent = np.asarray(extent, float)
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(n):
        r = _radius(rng, pop)
        for _ in range(tries):
            c = rng.uniform(-margin, 1.0 + margin, len(extent)) * extent
            ok = True
            for c2, r2 in placed:
                overlap = rng.uniform(0.0, pop.touching)
                if np.linalg.norm(c - c2) < (r + r2) * (1.0 - overlap):
                    ok = False
                    break
            if ok:
                placed.append((c, r))
                break
    return placed


def _blobs(rng, placed, pop: Population, first_label=1) -> list[Blob]:
    return [
        make_blob(
            rng,
            first_label + i,
            c,
            r,
            rng.uniform(*pop.elongation),
            pop.irregularity,
            _brightness(rng, pop),
            pop.texture,
            kind=pop.kind,
        )
        for i, (c, r) in enumerate(placed)
    ]


def _background(rng, shape, optics: Optics) -> np.ndarray:
    return optics.background * (1.0 + smooth_field(rng, shape[-2:], coarse=5, amplitude=optics.uneven))


def nuclei_2d(shape=(256, 256), n_objects=40, seed=0, dtype="uint16", population=None, optics=None) -> Sample:
    """Fluorescent nuclei in 2D (e.g. a DAPI/Hoechst image)."""
    rng = _rng(seed)
    pop = population or Population()
    optics = optics or Optics()
    blobs = _blobs(rng, _place(rng, n_objects, shape, pop), pop)
    labels, signal = render(shape, blobs)
    image = acquire(rng, blur(signal, optics), _background(rng, shape, optics), optics, dtype)
    return Sample(image, labels, (1.0, 1.0), "yx", name="nuclei 2D")


def cells_2d(shape=(256, 256), n_objects=25, seed=0, dtype="uint16", population=None, optics=None) -> Sample:
    """Whole cells, two channels: (0) nuclei, (1) cytoplasm. Labels are whole cells;
    ``extra["nuclei"]`` holds the nuclei labels (same ids)."""
    rng = _rng(seed)
    pop = population or Population(kind="cells", radius=17.0, irregularity=0.45, touching=0.4, elongation=(1.0, 2.0))
    optics = optics or Optics()
    placed = _place(rng, n_objects, shape, pop)
    cells = _blobs(rng, placed, pop)
    npop = Population()
    nuclei = [
        make_blob(rng, b.label, b.center + rng.normal(0, 0.1 * r, 2), 0.42 * r, rng.uniform(1.0, 1.4), 0.15, _brightness(rng, npop), 0.25)
        for b, (_, r) in zip(cells, placed)
    ]
    labels, cyto = render(shape, cells)
    nuc_labels, nuc = render(shape, nuclei)
    nuc_labels[labels != nuc_labels] = 0  # a nucleus lives inside its own cell
    nuc[nuc_labels == 0] = 0
    bg = _background(rng, shape, optics)
    image = np.stack([acquire(rng, blur(s, optics), bg, optics, dtype) for s in (nuc, 0.6 * cyto)])
    return Sample(image, labels, (1.0, 1.0), "cyx", name="cells 2D", extra={"nuclei": nuc_labels})


def nuclei_3d(shape=(32, 160, 160), n_objects=24, z_step=2.0, seed=0, dtype="uint16", population=None, optics=None) -> Sample:
    """A z-stack of nuclei. Voxels are ``z_step`` times deeper than wide (anisotropic z);
    light fades with depth and the axial PSF is wider than the lateral one."""
    rng = _rng(seed)
    pop = population or Population(radius=14.0, touching=0.25)
    optics = optics or Optics(psf_sigma_z=2.5)
    spacing = np.array([z_step, 1.0, 1.0])
    extent = np.asarray(shape, float) * spacing
    blobs = _blobs(rng, _place(rng, n_objects, extent, pop), pop)
    for b in blobs:  # deeper objects are dimmer (scattering, absorption)
        b.brightness *= float(np.exp(-b.center[0] / (2.0 * extent[0])))
    labels, signal = render(shape, blobs, spacing)
    bg = np.broadcast_to(_background(rng, shape, optics), shape)
    image = acquire(rng, blur(signal, optics, spacing), bg, optics, dtype)
    return Sample(image, labels, tuple(float(s) for s in spacing), "zyx", name="nuclei 3D")


# ----------------------------------------------------------------------------- time-lapse


@dataclass
class _Cell:
    blob: Blob  # geometry at birth; frames render deformed copies
    velocity: np.ndarray
    spin: float  # radians per frame
    age: float
    cycle: float  # frames between divisions
    wobble: np.ndarray  # (D,) phases of the shape oscillation


def _rotate2(rot: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]]) @ rot


def _frame_blob(cell: _Cell, t: int, mitosis: int) -> Blob:
    """The cell as it looks at frame ``t``: grown, wobbling, rounded up before division."""
    b = cell.blob
    growth = 1.0 + 0.35 * np.clip(cell.age / cell.cycle, 0.0, 1.0)
    radii = b.radii * growth * (1.0 + 0.08 * np.sin(0.35 * t + cell.wobble))
    brightness, texture, amp = b.brightness, b.tex_amp, b.bump_amp
    to_go = cell.cycle - cell.age
    if to_go <= mitosis:  # mitotic rounding: round, compact, bright, condensed chromatin
        radii = np.full_like(radii, radii.mean() * 0.8)
        brightness, texture, amp = brightness * 1.8, 0.5, amp * 0.3
    return replace(
        b,
        radii=radii,
        rot=_rotate2(b.rot, cell.spin * t),
        bump_phase=b.bump_phase + 0.15 * t,
        brightness=brightness,
        tex_amp=texture,
        bump_amp=amp,
    )


def _repel(cells: list[_Cell]) -> None:
    """Push apart cells that overlap too much (crowding), half the deficit each."""
    if len(cells) < 2:
        return
    c = np.array([k.blob.center for k in cells])
    r = np.array([k.blob.radii.mean() for k in cells])
    d = c[:, None] - c[None]
    dist = np.linalg.norm(d, axis=-1) + np.eye(len(cells))
    deficit = np.clip(0.85 * (r[:, None] + r[None]) - dist, 0, None)
    np.fill_diagonal(deficit, 0)
    push = (d / dist[..., None] * (0.25 * deficit)[..., None]).sum(axis=1)
    for k, p in zip(cells, push):
        k.blob.center = k.blob.center + p


def timelapse(
    n_frames=30,
    shape=(256, 256),
    n_objects=16,
    seed=0,
    dtype="uint16",
    population=None,
    optics=None,
    speed=1.2,
    drift=(0.0, 0.6),
    division_time=(30, 90),
    enter_rate=0.12,
    bleach=0.01,
    mitosis_frames=2,
) -> Sample:
    """A 2D time-lapse (t, y, x) of nuclei that move (persistent random walk plus a common
    ``drift`` in pixels/frame), deform, rotate, divide (``division_time`` frames per cycle;
    daughters get new labels, ``lineage[child] = parent``), enter at the borders
    (``enter_rate`` per frame) and leave, while the dye bleaches (``bleach`` per frame)."""
    rng = _rng(seed)
    pop = population or Population(radius=10.0, touching=0.15)
    optics = optics or Optics()
    shape = tuple(shape)
    extent = np.asarray(shape, float)
    drift = np.asarray(drift, float)
    next_label = 1
    lineage: dict[int, int] = {}

    def new_cell(center, radius, velocity, age=0.0) -> _Cell:
        nonlocal next_label
        blob = make_blob(rng, next_label, center, radius, rng.uniform(*pop.elongation), pop.irregularity, _brightness(rng, pop), pop.texture)
        next_label += 1
        cycle = rng.uniform(*division_time)
        return _Cell(blob, np.asarray(velocity, float), rng.normal(0, 0.03), age * cycle, cycle, rng.uniform(0, 2 * np.pi, 2))

    cells: list[_Cell] = []
    for c, r in _place(rng, n_objects, extent, pop, margin=0.02):
        cell = new_cell(c, r / 1.2, rng.normal(0, speed, 2), age=rng.uniform(0, 0.9))
        lineage[cell.blob.label] = 0
        cells.append(cell)

    labels = np.zeros((n_frames,) + shape, np.int32)
    signal = np.zeros((n_frames,) + shape, np.float32)
    for t in range(n_frames):
        labels[t], signal[t] = render(shape, [_frame_blob(k, t, mitosis_frames) for k in cells])
        signal[t] *= np.exp(-bleach * t)
        nxt: list[_Cell] = []
        for k in cells:
            k.age += 1
            if k.age >= k.cycle:  # divide along the long axis into two new labels
                axis = k.blob.rot[:, -1]
                r = k.blob.radii.mean() * 0.95
                for sgn in (1.0, -1.0):
                    d = new_cell(k.blob.center + sgn * 0.6 * r * axis, r * 0.8, k.velocity + sgn * 1.5 * axis)
                    lineage[d.blob.label] = k.blob.label
                    nxt.append(d)
                continue
            k.velocity = 0.7 * k.velocity + rng.normal(0, 0.5 * speed, 2)
            k.blob.center = k.blob.center + k.velocity + drift
            if np.all(k.blob.center > -k.blob.reach()) and np.all(k.blob.center < extent + k.blob.reach()):
                nxt.append(k)  # otherwise it has left the field for good
        if rng.random() < enter_rate:  # a cell comes in through a random border
            side, r = rng.integers(4), _radius(rng, pop) / 1.2
            pos = rng.uniform(0.1, 0.9, 2) * extent
            inward = np.zeros(2)
            ax, edge = divmod(int(side), 2)
            pos[ax] = -r if edge == 0 else extent[ax] + r
            inward[ax] = 1.0 if edge == 0 else -1.0
            cell = new_cell(pos, r, inward * 2.0 * speed, age=rng.uniform(0, 0.5))
            lineage[cell.blob.label] = 0
            nxt.append(cell)
        cells = nxt
        _repel(cells)

    image = acquire(rng, blur(signal, optics, axes_2d=True), _background(rng, shape, optics)[None], optics, dtype)
    tracks = _tracks(labels, lineage)
    lineage = {int(row[0]): int(row[3]) for row in tracks}
    return Sample(image, labels, (1.0, 1.0, 1.0), "tyx", name="cells time-lapse", lineage=lineage, tracks=tracks)


def _tracks(labels: np.ndarray, lineage: dict[int, int]) -> np.ndarray:
    """Cell-Tracking-Challenge style rows (label, first frame, last frame, parent)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t, frame in enumerate(labels):
        for lab in np.unique(frame[frame > 0]):
            first.setdefault(int(lab), t)
            last[int(lab)] = t
    def parent(lab):  # observed lineage: the mother must be in view the frame before
        mom = lineage.get(lab, 0)
        return mom if mom in last and last[mom] == first[lab] - 1 else 0

    rows = [(lab, first[lab], last[lab], parent(lab)) for lab in sorted(first)]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


# ----------------------------------------------------------------------------- helpers


def composite_rgb(image: np.ndarray, colors=((1.0, 0.2, 1.0), (0.1, 1.0, 0.2))) -> np.ndarray:
    """Blend a (C, Y, X) image into an 8-bit RGB (Y, X, 3) picture, one colour per channel
    (default: nuclei magenta, cytoplasm green), each channel stretched to its 0.5-99.8 %."""
    out = np.zeros(image.shape[1:] + (3,), np.float32)
    for ch, col in zip(image, colors):
        lo, hi = np.percentile(ch, (0.5, 99.8))
        out += np.clip((ch.astype(np.float32) - lo) / max(hi - lo, 1e-9), 0, 1)[..., None] * np.asarray(col, np.float32)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def random_scene(seed=0, shape=(256, 256)) -> Sample:
    """A 2D scene with randomised population, optics and dtype: one training example."""
    rng = _rng(seed)
    kind = str(rng.choice(["nuclei", "cells"]))
    pop = Population(
        kind=kind,
        radius=float(rng.uniform(5, 14) if kind == "nuclei" else rng.uniform(10, 24)),
        radius_sd=float(rng.uniform(0.05, 0.35)),
        elongation=(1.0, float(rng.uniform(1.0, 2.5))),
        irregularity=float(rng.uniform(0.0, 0.6)),
        brightness_sd=float(rng.uniform(0.1, 0.7)),
        texture=float(rng.uniform(0.0, 0.5)),
        touching=float(rng.uniform(0.0, 0.5)),
    )
    optics = Optics(
        psf_sigma=float(rng.uniform(0.6, 2.0)),
        background=float(rng.uniform(0.01, 0.3)),
        uneven=float(rng.uniform(0.0, 0.9)),
        haze=float(rng.uniform(0.0, 0.4)),
        photons=float(np.exp(rng.uniform(np.log(15), np.log(1500)))),
        read_noise=float(rng.uniform(0.5, 8.0)),
    )
    dtype = str(rng.choice(["uint8", "uint16", "float32"]))
    area = shape[0] * shape[1] / (np.pi * pop.radius**2)
    n = int(rng.uniform(0.15, 0.6) * area)
    sub = int(rng.integers(2**31))
    if kind == "cells":
        sample = cells_2d(shape, n, sub, dtype, pop, optics)
        return replace(sample, image=sample.image[1], axes="yx", name="random cells")
    return replace(nuclei_2d(shape, n, sub, dtype, pop, optics), name="random nuclei")
