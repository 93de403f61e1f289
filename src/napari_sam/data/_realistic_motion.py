"""Cells that move, deform, divide, enter and leave: the kinematics of the realistic
time-lapse. :func:`simulate` gives the objects of every frame and the lineage; rendering is
the caller's (:mod:`.realistic`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ._realistic_shapes import MITOTIC, Objects, place
from ._realistic_style import MAX_DIAMETER, MIN_DIAMETER, Style, candidate_radii, draw_objects


@dataclass
class _Cells:
    objs: Objects  # the look at birth (centre and angle kept current)
    vel: np.ndarray  # (n, 2) pixels per frame
    age: np.ndarray  # (n,) frames since birth
    cycle: np.ndarray  # (n,) frames from birth to division
    spin: np.ndarray  # (n,) radians per frame
    phase: np.ndarray  # (n,) of the size wobble

    def take(self, idx) -> "_Cells":
        return _Cells(self.objs.take(idx), *(getattr(self, f.name)[idx] for f in fields(self)[1:]))

    @staticmethod
    def concat(parts: list["_Cells"]) -> "_Cells":
        return _Cells(Objects.concat([p.objs for p in parts]),
                      *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Cells)[1:]))


def _new(rng, style, centers, radius, vel, first_label, division_time, age_share) -> _Cells:
    radius = np.clip(radius, MIN_DIAMETER / 2.0, MAX_DIAMETER / 2.0 / 1.3)  # room to grow
    objs = draw_objects(rng, style, centers, radius, first_label, allow_pairs=False)
    n = len(objs)
    cycle = rng.uniform(*division_time, n)
    return _Cells(objs, np.asarray(vel, float).reshape(n, 2), age_share * cycle, cycle,
                  rng.normal(0.0, 0.02, n), rng.uniform(0, 2 * np.pi, n))


def appearance(cells: _Cells, t: int, mitosis_frames: int) -> Objects:
    """The cells as they look at frame ``t``: grown, wobbling, rounded up before division."""
    o = cells.objs
    growth = 1.0 + 0.3 * np.clip(cells.age / cells.cycle, 0.0, 1.0)
    radius = np.clip(o.radius * growth * (1.0 + 0.05 * np.sin(0.3 * t + cells.phase)), MIN_DIAMETER / 2.0, MAX_DIAMETER / 2.0)
    frame = replace(o, radius=radius, kind=o.kind.copy(), elong=o.elong.copy(), brightness=o.brightness.copy(),
                    tex_amp=o.tex_amp.copy(), harm=o.harm.copy(), spots=o.spots.copy())
    m = (cells.cycle - cells.age) <= mitosis_frames  # mitosis: condensed, bright, compact
    if m.any():
        frame.kind[m] = MITOTIC
        frame.radius[m] = np.maximum(frame.radius[m] * 0.75, MIN_DIAMETER / 2.0)
        frame.elong[m] = np.where(np.arange(m.sum()) % 2 == 0, 2.8, 1.15)
        frame.brightness[m] *= 2.5
        frame.tex_amp[m] = 0.6
        frame.harm[m] *= 0.3
        frame.spots[m, :, 3] = 0.0
    return frame


def _repel(cells: _Cells) -> None:
    """Push apart cells that overlap too much (crowding), a quarter of the deficit each."""
    if len(cells.age) < 2:
        return
    c, r = cells.objs.center, cells.objs.radius
    d = c[:, None] - c[None]
    dist = np.linalg.norm(d, axis=-1) + np.eye(len(r))
    deficit = np.clip(0.8 * (r[:, None] + r[None]) - dist, 0, None)
    np.fill_diagonal(deficit, 0)
    cells.objs.center = c + (d / dist[..., None] * (0.25 * deficit)[..., None]).sum(axis=1)


def simulate(rng, style: Style, n_frames: int, shape, n_objects: int, speed=1.0, drift=(0.0, 0.4),
             division_time=(25, 80), enter_rate=0.15, mitosis_frames=2):
    """(objects of every frame, lineage {daughter: mother}) of a time-lapse."""
    extent = np.asarray(shape, float)
    radius = candidate_radii(rng, style, 3 * n_objects + 8) / 1.15
    keep, centers = place(rng, n_objects, extent, radius, style.touching, style.cluster, margin=0.03)
    cells = _new(rng, style, centers, radius[keep], rng.normal(0, speed, (len(keep), 2)), 1, division_time,
                 rng.uniform(0.0, 0.95, len(keep)))
    next_label = 1 + len(keep)
    lineage = {int(lab): 0 for lab in cells.objs.label}
    frames = []
    for t in range(n_frames):
        frames.append(appearance(cells, t, mitosis_frames))
        cells.age = cells.age + 1
        divide = cells.age >= cells.cycle
        born = []
        for i in np.flatnonzero(divide):  # two new labels along the mother's long axis
            o = cells.objs
            axis = np.array([np.sin(o.angle[i]), np.cos(o.angle[i])])  # (y, x)
            r = o.radius[i] * 1.3
            centers = o.center[i] + np.outer([0.55, -0.55], axis) * r
            vel = cells.vel[i] + np.outer([1.2, -1.2], axis)
            kids = _new(rng, style, centers, np.full(2, o.radius[i] * 0.8), vel, next_label, division_time, 0.0)
            kids.objs.angle[:] = o.angle[i] + rng.normal(0, 0.3, 2)
            for lab in kids.objs.label:
                lineage[int(lab)] = int(o.label[i])
            next_label += 2
            born.append(kids)
        cells = cells.take(np.flatnonzero(~divide))
        n = len(cells.age)
        cells.vel = 0.7 * cells.vel + rng.normal(0, 0.5 * speed, (n, 2))
        cells.objs.center = cells.objs.center + cells.vel + np.asarray(drift, float)
        cells.objs.angle = cells.objs.angle + cells.spin
        cells.objs.harm = cells.objs.harm + rng.normal(0, 0.004, cells.objs.harm.shape)
        reach = cells.objs.reach()[:, None]
        inside = np.all((cells.objs.center > -reach) & (cells.objs.center < extent + reach), axis=1)
        cells = cells.take(np.flatnonzero(inside))  # the others have left for good
        for _ in range(int(rng.poisson(enter_rate))):  # a cell comes in through a random border
            r = float(candidate_radii(rng, style, 1)[0] / 1.15)
            pos = rng.uniform(0.1, 0.9, 2) * extent
            ax, edge = divmod(int(rng.integers(4)), 2)
            pos[ax] = -r if edge == 0 else extent[ax] + r
            inward = np.zeros(2)
            inward[ax] = 1.0 if edge == 0 else -1.0
            new = _new(rng, style, pos[None], np.array([r]), (inward * 2.0 * max(speed, 0.5))[None], next_label,
                       division_time, rng.uniform(0.0, 0.5, 1))
            lineage[next_label] = 0
            next_label += 1
            born.append(new)
        cells = _Cells.concat([cells] + born) if born else cells
        _repel(cells)
    return frames, lineage
