"""Intensities and the microscope of the realistic generator.

* :func:`shade` turns rasterised objects into brightness: domed or flat nuclei, a bright rim
  now and then, a gradient across the object (uneven staining), chromatin texture from a
  bank of band-pass noise fields anchored to the object (it moves and turns with it),
  nucleoli (dark) and chromocentres (bright) spots; whole cells: a dim cytoplasm with a
  brighter cortex and a dark nucleus.
* :class:`Imaging` and :func:`acquire`: PSF blur (lateral, and axial in stacks), objects out of
  focus, field curvature (the blur changes over the field), out-of-focus haze, uneven
  background and illumination, vignetting, Poisson shot noise at low photon counts,
  Gaussian read noise, camera gain and offset, and the bit depth (8, 12 or 16 bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._realistic_shapes import CELL, MITOTIC, Objects, Raster, rasterise

BANK = 64  # texture fields are BANK x BANK pixels, tiled
DEPTHS = {"uint8": (np.uint8, 255), "uint12": (np.uint16, 4095), "uint16": (np.uint16, 65535)}


def texture_bank(rng, n: int = 4) -> np.ndarray:
    """(n, BANK, BANK) periodic band-pass noise, mean 0, std 1 (grain of ~2 px)."""
    white = rng.normal(0.0, 1.0, (n, BANK, BANK)).astype(np.float32)
    fine = ndi.gaussian_filter(white, (0, 1.0, 1.0), mode="wrap")
    coarse = ndi.gaussian_filter(white, (0, 3.0, 3.0), mode="wrap")
    band = fine - 0.6 * coarse
    band -= band.mean(axis=(1, 2), keepdims=True)
    return band / band.std(axis=(1, 2), keepdims=True)


def shade(objs: Objects, ras: Raster, bank: np.ndarray, tex_scale: float) -> np.ndarray:
    """Brightness (float32, the shape of ``ras.owner``) of the rasterised objects."""
    out = np.zeros(ras.owner.shape, np.float32)
    flat = ras.owner.reshape(-1)
    at = np.flatnonzero(flat >= 0)
    if not len(at):
        return out
    o = flat[at]
    d, un, vn = ras.d, ras.un, ras.vn
    kind = objs.kind[o]
    level = 1.0 - objs.dome[o] * d**2 + objs.rim[o] * np.exp(-(((1.0 - d) / 0.12) ** 2))
    cell = kind == CELL
    if cell.any():  # cytoplasm: dim inside, brighter cortex, a dark nucleus near the centre
        dc, uc, vc = d[cell], un[cell], vn[cell]
        nucleus = np.hypot(uc - 0.15 * objs.grad[o[cell], 0], vc - 0.15 * objs.grad[o[cell], 1]) / 0.42
        level[cell] = (0.55 + 0.45 * objs.rim[o[cell]] * dc**2) * (1.0 - 0.6 * np.exp(-(nucleus**4)))
    level[kind == MITOTIC] = 1.0
    grad = 1.0 + objs.grad[o, 0] * un + objs.grad[o, 1] * vn
    tu = np.floor(ras.u / tex_scale + objs.tex_off[o, 0]).astype(np.int64) % BANK
    tv = np.floor(ras.v / tex_scale + objs.tex_off[o, 1]).astype(np.int64) % BANK
    tex = 1.0 + objs.tex_amp[o] * bank[objs.tex_id[o], tu, tv]
    spots = np.ones(len(o))
    has = np.flatnonzero((objs.spots[:, :, 3] != 0).any(axis=1)[o])  # pixels of objects with spots
    if len(has):
        sp = objs.spots[o[has]]  # (m, S, 4)
        r2 = (un[has, None] - sp[..., 0]) ** 2 + (vn[has, None] - sp[..., 1]) ** 2
        spots[has] += (sp[..., 3] * np.exp(-r2 / (2.0 * sp[..., 2] ** 2))).sum(axis=1)
    value = objs.brightness[o] * level * np.clip(grad, 0.2, None) * np.clip(tex, 0.0, None) * np.clip(spots, 0.05, None)
    out.reshape(-1)[at] = value
    return out


@dataclass
class Imaging:
    """The microscope and camera of one scene. Brightness units: a typical object is ~1."""

    psf_sigma: float = 1.2  # lateral PSF, pixels
    psf_sigma_z: float = 4.0  # axial PSF, physical units (stacks)
    defocus_sigma: float = 3.0  # extra blur of objects out of focus
    curvature: float = 0.0  # 0-1: share of the field that is blurred by curvature_sigma more
    curvature_sigma: float = 1.5
    curvature_seed: int = 0  # of its smooth map (the same on every frame of a movie)
    haze: float = 0.1  # out-of-focus light: share of a wide blur of the signal
    haze_sigma: float = 12.0
    background: float = 0.15
    uneven: float = 0.3  # relative smooth variation of the background
    illumination: float = 0.15  # relative smooth variation of the excitation
    vignetting: float = 0.2  # relative loss at the corners
    vignette_center: tuple = (0.5, 0.5)
    photons: float = 100.0  # photons per brightness unit (low = noisy)
    read_noise: float = 2.0  # photons
    depth: str = "uint16"  # "uint8" | "uint12" | "uint16"
    fill: float = 0.5  # the 99.9th percentile of the expected counts lands at this share of the range
    offset: float = 0.0  # camera offset, share of the range
    attenuation: float = 0.0  # stacks: loss of light per physical unit of depth


def draw_imaging(rng) -> Imaging:
    depth = str(rng.choice(list(DEPTHS), p=[0.35, 0.3, 0.35]))
    fill = {"uint8": (0.35, 1.05), "uint12": (0.08, 1.05), "uint16": (0.003, 0.9)}[depth]
    psf = float(rng.uniform(0.6, 2.2))
    return Imaging(
        psf_sigma=psf,
        psf_sigma_z=psf * float(rng.uniform(2.5, 4.5)),
        defocus_sigma=float(rng.uniform(1.5, 5.0)),
        curvature=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.4 else 0.0,
        curvature_sigma=float(rng.uniform(0.8, 3.0)),
        curvature_seed=int(rng.integers(2**31)),
        haze=float(rng.uniform(0.0, 0.35)),
        haze_sigma=float(rng.uniform(6.0, 24.0)),
        background=float(np.exp(rng.uniform(np.log(0.02), np.log(0.6)))),
        uneven=float(rng.uniform(0.0, 0.7)),
        illumination=float(rng.uniform(0.0, 0.35)),
        vignetting=float(rng.uniform(0.0, 0.5)) if rng.random() < 0.6 else 0.0,
        vignette_center=tuple(float(v) for v in rng.uniform(0.3, 0.7, 2)),
        photons=float(np.exp(rng.uniform(np.log(8.0), np.log(30.0)) if rng.random() < 0.2
                             else rng.uniform(np.log(30.0), np.log(3000.0)))),
        read_noise=float(rng.uniform(0.5, 6.0)),
        depth=depth,
        fill=float(np.exp(rng.uniform(*np.log(fill)))),
        offset=float(rng.uniform(0.0, 0.08)),
        attenuation=float(rng.uniform(0.0, 0.01)),
    )


def smooth(rng, shape2d, coarse: int = 4) -> np.ndarray:
    """A smooth random field over ``shape2d``, mean ~0, max |value| 1: ``coarse`` x ``coarse``
    random weights on Gaussian bumps (a separable product, cheap at any size)."""
    small = rng.normal(0.0, 1.0, (coarse, coarse))

    def basis(n):
        x = (np.arange(n) + 0.5) / n * coarse - 0.5
        return np.exp(-0.5 * (x[:, None] - np.arange(coarse)[None]) ** 2 / 0.6**2)

    f = basis(shape2d[0]) @ small @ basis(shape2d[1]).T
    return (f / max(float(np.abs(f).max()), 1e-9)).astype(np.float32)


def wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the last two axes with a large ``sigma``, on a pooled copy (fast)."""
    f = max(1, int(sigma // 3))
    h, w = image.shape[-2:]
    ph, pw = -h % f, -w % f
    pad = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
    small = pad.reshape(pad.shape[:-2] + (pad.shape[-2] // f, f, pad.shape[-1] // f, f)).mean(axis=(-3, -1))
    small = ndi.gaussian_filter(small, [0] * (image.ndim - 2) + [sigma / f] * 2, mode="nearest", truncate=3.0)
    if f == 1:
        return small
    big = np.repeat(np.repeat(small, f, axis=-2), f, axis=-1)  # then smooth the steps away
    big = ndi.uniform_filter(big, [1] * (image.ndim - 2) + [f, f], mode="nearest")
    return big[..., :h, :w]


def optics_blur(sharp: np.ndarray, soft: np.ndarray, im: Imaging, z_step: float | None = None) -> np.ndarray:
    """PSF, defocused objects, field curvature and haze of (Z, H, W) brightness; ``z_step``
    (physical per slice) blurs along z too, else each slice on its own."""
    sz = 0.0 if z_step is None else im.psf_sigma_z / z_step
    sig = (sz, im.psf_sigma, im.psf_sigma)
    out = ndi.gaussian_filter(sharp, sig, mode="nearest", truncate=3.0)
    if im.curvature > 0:
        more = ndi.gaussian_filter(sharp, (sz,) + (np.hypot(im.psf_sigma, im.curvature_sigma),) * 2, mode="nearest", truncate=3.0)
        weight = np.clip(0.5 + 0.5 * smooth(np.random.default_rng(im.curvature_seed), sharp.shape[-2:], 3), 0, 1) * im.curvature
        out = out + weight * (more - out)
    if soft.any():
        ds = np.hypot(im.psf_sigma, im.defocus_sigma)
        out += ndi.gaussian_filter(soft, (sz * 1.5, ds, ds), mode="nearest", truncate=3.0)
    if im.haze > 0:
        total = sharp + soft
        if z_step is not None:
            total = ndi.gaussian_filter(total, (3.0 * sz, 0, 0), mode="nearest", truncate=3.0)
        out += im.haze * wide_blur(total, im.haze_sigma)
    return out


def illumination(rng, shape2d, im: Imaging) -> tuple[np.ndarray, np.ndarray]:
    """(excitation x collection gain, background) fields over ``shape2d``."""
    h, w = shape2d
    yy = (np.arange(h, dtype=np.float32)[:, None] / max(h - 1, 1) - im.vignette_center[0])
    xx = (np.arange(w, dtype=np.float32)[None, :] / max(w - 1, 1) - im.vignette_center[1])
    vig = 1.0 - im.vignetting * np.clip((yy**2 + xx**2) / 0.5, 0, 1.5)
    gain = vig * (1.0 + im.illumination * smooth(rng, shape2d, 3))
    bg = im.background * (1.0 + im.uneven * smooth(rng, shape2d, 5))
    return gain.astype(np.float32), np.clip(bg * vig, 0, None).astype(np.float32)


def acquire(rng, signal: np.ndarray, background: np.ndarray, im: Imaging, top: float | None = None) -> np.ndarray:
    """Shot noise, read noise, gain, offset and quantisation of ``signal + background``.
    ``top``: the expected photon count mapped to ``im.fill`` of the range (default: the
    99.9th percentile of this image; a time-lapse passes one value for every frame)."""
    expected = np.clip((signal + background) * im.photons, 0, None).astype(np.float32)
    # Poisson where counts are low; above 30 photons its normal limit (same mean and variance)
    read2 = np.float32(im.read_noise**2)
    counts = expected + np.sqrt(expected + read2) * rng.standard_normal(expected.shape, dtype=np.float32)
    low = np.flatnonzero(expected.reshape(-1) < 30.0)
    if len(low):
        lam = expected.reshape(-1)[low]
        counts.reshape(-1)[low] = rng.poisson(lam) + np.float32(im.read_noise) * rng.standard_normal(len(low), dtype=np.float32)
    dtype, vmax = DEPTHS[im.depth]
    if top is None:
        top = float(np.percentile(expected.reshape(-1)[::7], 99.9))
    gain = im.fill * vmax / max(top, 1.0)
    return np.clip(np.rint(counts * gain + im.offset * vmax), 0, vmax).astype(dtype)


def debris(rng, shape, amount: float) -> np.ndarray:
    """Unlabelled specks and fibres (brightness, before the PSF) over (Z, H, W) ``shape``."""
    out = np.zeros(shape, np.float32)
    n = int(rng.poisson(amount * 25 * shape[0]))
    if n:
        pos = tuple(rng.integers(0, s, n) for s in shape)
        np.add.at(out, pos, rng.lognormal(0.0, 0.8, n).astype(np.float32) * 3.0)
    for _ in range(int(rng.poisson(amount * 1.5))):  # a fibre: a random smooth curve of dots
        z = int(rng.integers(shape[0]))
        p = rng.uniform(0, 1, 2) * shape[1:]
        step = rng.normal(0, 1, 2)
        steps = np.cumsum(step + rng.normal(0, 0.25, (int(rng.integers(20, 120)), 2)).cumsum(0) * 0.05, axis=0)
        pts = np.rint(p + steps / np.maximum(np.linalg.norm(step), 1e-6)).astype(int)
        ok = (pts >= 0).all(1) & (pts[:, 0] < shape[1]) & (pts[:, 1] < shape[2])
        np.add.at(out, (np.full(ok.sum(), z), pts[ok, 0], pts[ok, 1]), float(rng.uniform(0.2, 0.8)))
    return ndi.gaussian_filter(out, (0, 0.7, 0.7), mode="nearest", truncate=3.0) if out.any() else out


def compose(rng, objs: Objects, style, im: Imaging, shape2d, bank: np.ndarray, ghosts: Objects | None = None,
            specks: np.ndarray | None = None, n_slices: int = 1, z_step: float | None = None):
    """Labels (Z, H, W) int32, blurred brightness (Z, H, W) and the count of dropped pixels of
    ``objs``, with unlabelled ``ghosts`` (out of focus) and ``specks`` (debris; drawn if None)."""
    ras = rasterise(objs, shape2d, n_slices, 1.0 if z_step is None else z_step)
    bright = shade(objs, ras, bank, style.tex_scale)
    owner = ras.owner
    defocused = np.zeros(owner.shape, bool)
    if objs.defocus.any():
        defocused = (owner >= 0) & objs.defocus[np.maximum(owner, 0)]
    soft = np.where(defocused, bright, 0.0).astype(np.float32)
    sharp = np.where(defocused, 0.0, bright).astype(np.float32)
    if ghosts is not None and len(ghosts):
        soft += shade(ghosts, rasterise(ghosts, shape2d), bank, style.tex_scale)
    sharp += debris(rng, sharp.shape, style.debris) if specks is None else specks
    labels = np.where(owner >= 0, objs.label[np.maximum(owner, 0)], 0).astype(np.int32)
    return labels, optics_blur(sharp, soft, im, z_step), ras.dropped
