"""Objects of the realistic generator: shapes, placement and a vectorised rasteriser.

An object is a star-convex outline around its centre: an ellipse (mean radius ``radius``,
aspect ``elong``, orientation ``angle``) whose radius is modulated by a few Fourier
harmonics (lobes, kidneys, irregular outlines). In a stack an object is a flattened solid:
its in-plane outline shrinks as ``sqrt(1 - dz^2)`` towards the ends of its half-depth
``zh`` (it starts and ends inside the stack), and it may tilt a little.

Every pixel goes to the object with the smallest normalised distance ``d`` (``d < 1``
inside), so overlapping objects become touching ones with a shared border. The rasteriser
works on batches of same-size boxes (numpy, no per-pixel Python), one box per object and
slice, and keeps each object's largest 4-connected part per slice (a long object crossed by
a neighbour loses its far tip rather than splitting in two).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.spatial import cKDTree
from skimage.measure import label as connected

HARMONICS = 6  # Fourier terms of the outline (k = 1 .. HARMONICS)
SPOTS = 4  # nucleoli / chromocentres per object (strength 0 = none)
NUCLEUS, CELL, MITOTIC = 0, 1, 2
_HALF = (2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)  # box half-widths


@dataclass
class Objects:
    """``n`` objects as arrays. Lengths in pixels (in-plane); z in physical units."""

    label: np.ndarray  # (n,) int32
    center: np.ndarray  # (n, 2) y, x
    radius: np.ndarray  # (n,) geometric-mean radius
    elong: np.ndarray  # (n,) aspect ratio >= 1
    angle: np.ndarray  # (n,) long axis, radians from +x
    harm: np.ndarray  # (n, K, 2) cos / sin amplitudes of harmonics 1..K of the outline
    kind: np.ndarray  # (n,) NUCLEUS | CELL | MITOTIC
    brightness: np.ndarray  # (n,)
    dome: np.ndarray  # (n,) centre-to-edge fall of the intensity
    rim: np.ndarray  # (n,) bright rim (nuclear envelope / cell cortex)
    grad: np.ndarray  # (n, 2) linear intensity gradient across the object
    tex_amp: np.ndarray  # (n,) texture (chromatin) amplitude
    tex_id: np.ndarray  # (n,) which field of the texture bank
    tex_off: np.ndarray  # (n, 2) where in it (pixels)
    spots: np.ndarray  # (n, SPOTS, 4) local y, x (radius units), sigma, strength (< 0 dark, > 0 bright)
    defocus: np.ndarray  # (n,) bool: rendered out of focus
    zc: np.ndarray  # (n,) centre depth (physical); 0 in 2D
    zh: np.ndarray  # (n,) half depth (physical); inf in 2D
    tilt: np.ndarray  # (n, 2) in-plane shift per physical unit of depth

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx) -> "Objects":
        return Objects(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list["Objects"]) -> "Objects":
        return Objects(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Objects)})

    def reach(self) -> np.ndarray:
        """An upper bound of each outline's distance from its centre (pixels)."""
        wobble = 1.0 + np.abs(self.harm).sum(axis=(1, 2))
        return self.radius * np.sqrt(self.elong) * wobble


# ----------------------------------------------------------------------------- shapes


def outline_harmonics(rng, style: np.ndarray, irregularity: float) -> np.ndarray:
    """(n, K, 2) harmonic amplitudes for ``style`` codes 0 round, 1 elongated, 2 lobed,
    3 irregular, 4 mitotic."""
    n, k = len(style), np.arange(1, HARMONICS + 1)
    amp = rng.normal(0.0, 1.0, (n, HARMONICS, 2)) * (0.02 + 0.5 * irregularity / k**1.8)[None, :, None]
    amp[:, 0] *= 0.3  # k = 1 moves the outline off-centre: keep it mild
    irregular = style == 3
    amp[irregular] *= 2.0
    lobed = np.flatnonzero(style == 2)
    if lobed.size:  # one dominant lobe count: kidney (2), tri- or tetra-lobed
        kk = rng.choice([2, 3, 4], size=lobed.size, p=[0.5, 0.3, 0.2])
        phase = rng.uniform(0, 2 * np.pi, lobed.size)
        a = rng.uniform(0.12, 0.3, lobed.size)
        amp[lobed, kk - 1, 0] = a * np.cos(phase)
        amp[lobed, kk - 1, 1] = a * np.sin(phase)
    amp[style == 0] *= 0.4
    amp[style == 4] *= 0.6
    # keep r(angle) > 0.35: scale down outlines whose amplitudes could reach below it
    total = np.abs(amp).sum(axis=(1, 2))
    amp *= np.minimum(1.0, 0.65 / np.maximum(total, 1e-9))[:, None, None]
    return amp


def place(rng, n_target: int, extent, radius: np.ndarray, touching: float, cluster: float,
          cluster_spread: float = 2.5, margin: float = 0.0, zscale: float | None = None):
    """Up to ``n_target`` centres among ``len(radius)`` candidates (uniform or in clusters),
    greedily keeping a candidate unless it overlaps a kept one by more than a random
    share (up to ``touching``) of the two radii. Returns the kept candidates' indices, in
    order, and their centres ((y, x) or (z, y, x) when ``extent`` has 3 entries)."""
    extent = np.asarray(extent, float)
    m = len(radius)
    pts = rng.uniform(-margin, 1.0 + margin, (m, len(extent))) * extent
    n_parents = max(1, int(rng.integers(1, 2 + m // 12)))
    parents = rng.uniform(0.1, 0.9, (n_parents, len(extent))) * extent
    clustered = rng.random(m) < cluster
    which = rng.integers(n_parents, size=m)
    spread = cluster_spread * float(np.mean(radius))
    jitter = rng.normal(0.0, spread, (m, len(extent)))
    if zscale is not None:
        jitter[:, 0] *= zscale
    pts[clustered] = parents[which[clustered]] + jitter[clustered]
    keep = _greedy(rng, pts, radius, touching)
    keep = keep[:n_target]
    return keep, pts[keep]


def _greedy(rng, pts: np.ndarray, radius: np.ndarray, touching: float) -> np.ndarray:
    """Indices a sequential first-come greedy pass would keep, found in vectorised rounds."""
    m = len(pts)
    if m == 0:
        return np.zeros(0, int)
    pairs = cKDTree(pts).query_pairs(2.0 * float(radius.max()), output_type="ndarray")
    if len(pairs):
        i, j = np.sort(pairs, axis=1).T
        allowed = (radius[i] + radius[j]) * (1.0 - rng.uniform(0.0, touching, len(i)))
        bad = np.linalg.norm(pts[i] - pts[j], axis=1) < allowed
        i, j = i[bad], j[bad]  # i < j: j loses if i is kept
    else:
        i = j = np.zeros(0, int)
    state = np.zeros(m, np.int8)  # 0 undecided, 1 kept, -1 dropped
    while True:
        undecided = state == 0
        if not undecided.any():
            break
        lost = np.zeros(m, bool)
        lost[j[state[i] == 1]] = True
        state[lost & undecided] = -1
        blocked = np.zeros(m, bool)
        blocked[j[state[i] >= 0]] = True  # an earlier rival still undecided or kept
        state[(state == 0) & ~blocked] = 1
    return np.flatnonzero(state == 1)


# ----------------------------------------------------------------------------- rasteriser


def _instances(objs: Objects, n_slices: int, z_step: float):
    """(object index, slice, dz in half-depths) for every slice an object reaches."""
    n = len(objs)
    if n_slices == 1 and np.all(np.isinf(objs.zh)):
        return np.arange(n), np.zeros(n, int), np.zeros(n)
    z0 = np.clip(np.ceil((objs.zc - objs.zh) / z_step), 0, n_slices).astype(int)
    z1 = np.clip(np.floor((objs.zc + objs.zh) / z_step), -1, n_slices - 1).astype(int)
    counts = np.maximum(z1 - z0 + 1, 0)
    obj = np.repeat(np.arange(n), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    z = z0[obj] + np.arange(len(obj)) - start
    dz = (z * z_step - objs.zc[obj]) / objs.zh[obj]
    return obj, z, dz


@dataclass
class Raster:
    """What :func:`rasterise` gives: ``owner`` (Z, H, W) object index or -1, and for every
    owned pixel (flat order of ``owner >= 0``) its local coordinates."""

    owner: np.ndarray
    d: np.ndarray  # normalised distance (0 centre, 1 outline)
    un: np.ndarray  # local coordinates along / across the long axis, radius units
    vn: np.ndarray
    u: np.ndarray  # the same in pixels (texture)
    v: np.ndarray
    dropped: int  # pixels of outline parts cut off from their object by a neighbour


def rasterise(objs: Objects, shape2d, n_slices: int = 1, z_step: float = 1.0) -> Raster:
    h, w = (int(s) for s in shape2d)
    obj, zs, dz = _instances(objs, n_slices, z_step)
    depth = (zs * z_step - objs.zc[obj]) if n_slices > 1 else np.zeros(len(obj))
    cy = objs.center[obj, 0] + objs.tilt[obj, 0] * depth
    cx = objs.center[obj, 1] + objs.tilt[obj, 1] * depth
    reach = objs.reach()[obj] * np.sqrt(np.clip(1.0 - dz**2, 0.0, 1.0)) + 1.0
    half = np.asarray(_HALF)[np.minimum(np.searchsorted(_HALF, np.ceil(reach)), len(_HALF) - 1)]
    parts = []
    for hw in np.unique(half):
        ii = np.flatnonzero(half == hw)
        parts.append(_box_pixels(objs, obj[ii], zs[ii], dz[ii], cy[ii], cx[ii], int(hw), h, w, ii))
    idx, d, inst, un, vn = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(5))
    owner = np.full(n_slices * h * w, -1, np.int64)
    if len(idx):
        order = np.lexsort((d, idx))
        first = np.ones(len(order), bool)
        first[1:] = idx[order[1:]] != idx[order[:-1]]
        win = order[first]
        owner[idx[win].astype(np.int64)] = obj[inst[win].astype(np.int64)]
    owner = owner.reshape(n_slices, h, w)
    dropped = _keep_largest_parts(owner)
    # local coordinates of the kept pixels, in the flat order of owner >= 0
    keep_flat = np.flatnonzero(owner.reshape(-1) >= 0)
    if len(idx):
        pos = np.full(n_slices * h * w, -1, np.int64)
        pos[idx[win].astype(np.int64)] = win
        sel = pos[keep_flat]
        d, un, vn, inst = d[sel], un[sel], vn[sel], inst[sel].astype(np.int64)
        o = obj[inst]
        a = objs.radius[o] * np.sqrt(objs.elong[o])
        b = objs.radius[o] / np.sqrt(objs.elong[o])
        return Raster(owner, d, un, vn, un * a, vn * b, dropped)
    e = np.zeros(0)
    return Raster(owner, e, e, e, e, e, dropped)


def _box_pixels(objs, obj, zs, dz, cy, cx, hw, h, w, inst):
    """Pixels with ``d < 1`` of a batch of same-size boxes: flat index, d, instance, local."""
    off = np.arange(-hw, hw + 1)
    ys = np.rint(cy).astype(int)[:, None] + off  # (n, S)
    xs = np.rint(cx).astype(int)[:, None] + off
    f32 = np.float32
    dy = (ys - cy[:, None]).astype(f32)[:, :, None]  # (n, S, 1)
    dx = (xs - cx[:, None]).astype(f32)[:, None, :]  # (n, 1, S)
    c, s = np.cos(objs.angle[obj]).astype(f32)[:, None, None], np.sin(objs.angle[obj]).astype(f32)[:, None, None]
    r = objs.radius[obj].astype(f32)[:, None, None]
    e = np.sqrt(objs.elong[obj]).astype(f32)[:, None, None]
    un = (dx * c + dy * s) / (r * e)
    vn = (dy * c - dx * s) / (r / e)
    rho = np.hypot(un, vn)
    c1 = un / np.maximum(rho, 1e-9)
    s1 = vn / np.maximum(rho, 1e-9)
    ck, sk = c1, s1
    rr = np.ones_like(rho)
    harm = objs.harm[obj].astype(f32)
    for k in range(HARMONICS):
        rr += harm[:, k, 0, None, None] * ck + harm[:, k, 1, None, None] * sk
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
    d = np.sqrt((rho / np.maximum(rr, f32(0.3))) ** 2 + (dz**2).astype(f32)[:, None, None])
    inside = (d < 1.0) & ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    n_i, y_i, x_i = np.nonzero(inside)
    flat = (zs[n_i] * h + ys[n_i, y_i]) * w + xs[n_i, x_i]
    return flat, d[inside], inst[n_i], un[inside], vn[inside]


def _keep_largest_parts(owner: np.ndarray) -> int:
    """Per slice, pixels outside each object's largest 4-connected part go to background."""
    dropped = 0
    for sl in owner:
        comp = connected(sl + 1, background=0, connectivity=1)
        n = int(comp.max())
        if n == 0:
            continue
        flat_c, flat_o = comp.reshape(-1), sl.reshape(-1)
        size = np.bincount(flat_c, minlength=n + 1)
        comp_owner = np.full(n + 1, -1, np.int64)
        comp_owner[flat_c] = flat_o
        cand = np.flatnonzero(comp_owner >= 0)
        if len(np.unique(comp_owner[cand])) == len(cand):
            continue  # every object is in one piece
        order = cand[np.lexsort((-size[cand], comp_owner[cand]))]
        best = np.ones(len(order), bool)
        best[1:] = comp_owner[order[1:]] != comp_owner[order[:-1]]
        keep = np.zeros(n + 1, bool)
        keep[order[best]] = True
        lost = (flat_o >= 0) & ~keep[flat_c]
        dropped += int(lost.sum())
        flat_o[lost] = -1
    return dropped
