"""N-D blob rendering and the imaging model behind :mod:`napari_sam.data.synthetic`.

A blob is an irregular, textured ellipse (2D) or ellipsoid (3D) described in physical
units; every pixel goes to the blob whose normalised distance is smallest, so overlapping
blobs become touching objects with a clean shared border. The imaging model turns a
brightness map into camera counts: blur (PSF), uneven background, out-of-focus haze,
Poisson shot noise, Gaussian read noise, and the final dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi


@dataclass
class Blob:
    """One object. Lengths are physical units (pixels in-plane); ``rot`` maps local -> world."""

    label: int
    center: np.ndarray  # (D,)
    radii: np.ndarray  # (D,) semi-axes
    rot: np.ndarray  # (D, D) rotation, columns = local axes in world coordinates
    bump_freq: np.ndarray  # (J, D) shape perturbation: r(u) = 1 + sum a_j sin(u . w_j + phi_j)
    bump_amp: np.ndarray  # (J,)
    bump_phase: np.ndarray  # (J,)
    brightness: float
    tex_freq: np.ndarray  # (K, D) texture plane waves in object-local units
    tex_phase: np.ndarray  # (K,)
    tex_amp: float
    spots: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (S, D+1): local pos, depth
    kind: str = "nuclei"  # "nuclei" (domed, textured) | "cells" (dim cytoplasm, dark nucleus)

    def reach(self) -> float:
        """An upper bound of the blob's extent from its centre."""
        return float(self.radii.max() * (1.0 + np.abs(self.bump_amp).sum()))


def random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A uniformly random rotation; in 3D the first (z) local axis stays near z (flat nuclei)."""
    if ndim == 2:
        a = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s], [s, c]])
    a = rng.uniform(0, 2 * np.pi)
    tilt = rng.normal(0, 0.15)
    c, s, ct, st = np.cos(a), np.sin(a), np.cos(tilt), np.sin(tilt)
    rz = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # rotation in the yx plane
    ry = np.array([[ct, -st, 0], [st, ct, 0], [0, 0, 1]])  # small tilt out of the plane
    return ry @ rz


def make_blob(rng, label, center, radius, elongation, irregularity, brightness, texture, kind="nuclei") -> Blob:
    """A random blob of mean ``radius`` around ``center`` (physical units)."""
    d = len(center)
    radii = np.full(d, float(radius))
    radii[-1] *= np.sqrt(elongation)
    radii[-2] /= np.sqrt(elongation)
    if d == 3:
        radii[0] *= rng.uniform(0.6, 0.85)  # nuclei are flattened along z
    j = 3
    freq = rng.normal(0, 1, (j, d))
    freq *= (rng.uniform(1.5, 3.5, j) / np.linalg.norm(freq, axis=1))[:, None]
    k = 6
    tex = rng.normal(0, 1, (k, d))
    tex *= (rng.uniform(4.0, 12.0, k) / np.linalg.norm(tex, axis=1))[:, None]
    n_spots = rng.integers(0, 4) if kind == "nuclei" else 0
    spots = np.concatenate([rng.uniform(-0.5, 0.5, (n_spots, d)), rng.uniform(0.2, 0.5, (n_spots, 1))], axis=1)
    return Blob(
        label=label,
        center=np.asarray(center, float),
        radii=radii,
        rot=random_rotation(rng, d),
        bump_freq=freq,
        bump_amp=rng.uniform(0, irregularity, j) / j,
        bump_phase=rng.uniform(0, 2 * np.pi, j),
        brightness=float(brightness),
        tex_freq=tex,
        tex_phase=rng.uniform(0, 2 * np.pi, k),
        tex_amp=float(texture),
        spots=spots,
        kind=kind,
    )


def _box(blob: Blob, shape, spacing) -> tuple[slice, ...] | None:
    reach = blob.reach()
    box = []
    for c, n, s in zip(blob.center, shape, spacing):
        lo = max(int(np.floor((c - reach) / s)), 0)
        hi = min(int(np.ceil((c + reach) / s)) + 1, n)
        if hi <= lo:
            return None
        box.append(slice(lo, hi))
    return tuple(box)


def _local(blob: Blob, box, spacing) -> np.ndarray:
    """Object-local, radius-normalised coordinates of the box's pixels: (..., D)."""
    axes = [(np.arange(b.start, b.stop) * s) - c for b, s, c in zip(box, spacing, blob.center)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return (grid @ blob.rot) / blob.radii


def _distance(blob: Blob, q: np.ndarray) -> np.ndarray:
    rho = np.linalg.norm(q, axis=-1)
    u = q / np.maximum(rho, 1e-9)[..., None]
    bumps = np.sin(u @ blob.bump_freq.T + blob.bump_phase) @ blob.bump_amp
    return rho / (1.0 + bumps)


def _intensity(blob: Blob, q: np.ndarray, d: np.ndarray) -> np.ndarray:
    tex = np.cos(q @ blob.tex_freq.T + blob.tex_phase).mean(axis=-1)
    if blob.kind == "cells":
        # cytoplasmic stain: bright cortex, dimmer interior, dark nucleus-shaped hole
        level = 0.55 + 0.45 * np.clip(d, 0, 1) ** 2
        nucleus = np.linalg.norm(q * 2.2, axis=-1)
        level = level * (1.0 - 0.6 * np.exp(-(nucleus**4)))
    else:
        level = 1.0 - 0.3 * d**2  # domed nucleus
        for spot in blob.spots:  # nucleoli: dark spots
            level = level * (1.0 - spot[-1] * np.exp(-np.sum((q - spot[:-1]) ** 2, axis=-1) / 0.03))
    return blob.brightness * level * (1.0 + blob.tex_amp * tex)


def render(shape, blobs, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``blobs`` -> (instance labels int32, brightness float32) of ``shape``."""
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    inten = np.zeros(shape, np.float32)
    for blob in blobs:
        box = _box(blob, shape, spacing)
        if box is None:
            continue
        q = _local(blob, box, spacing)
        d = _distance(blob, q)
        win = (d < 1.0) & (d < best[box])
        if not win.any():
            continue
        labels[box][win] = blob.label
        best[box][win] = d[win]
        inten[box][win] = _intensity(blob, q[win], d[win])
    return labels, inten


def smooth_field(rng, shape, coarse=6, amplitude=1.0) -> np.ndarray:
    """A smooth random field (cubic upsampling of a coarse grid), mean 0, roughly +-amplitude."""
    small = rng.normal(0, 1, tuple(max(2, min(coarse, n)) for n in shape))
    zoom = [n / m for n, m in zip(shape, small.shape)]
    field_ = ndi.zoom(small, zoom, order=3, mode="nearest", grid_mode=True)
    field_ = field_[tuple(slice(0, n) for n in shape)]
    return (amplitude * field_ / max(float(np.abs(field_).max()), 1e-9)).astype(np.float32)


@dataclass
class Optics:
    """The microscope and camera. Intensities are in object-brightness units before counts."""

    psf_sigma: float = 1.0  # in-plane Gaussian PSF sigma, pixels
    psf_sigma_z: float = 2.0  # axial PSF sigma, physical units (only for stacks)
    background: float = 0.06  # mean background, brightness units
    uneven: float = 0.5  # relative amplitude of the smooth background variation
    haze: float = 0.15  # out-of-focus light: fraction of a wide blur of the signal
    photons: float = 120.0  # photons per brightness unit (lower = noisier)
    read_noise: float = 3.0  # camera read noise, photons (Gaussian)
    offset: float = 100.0  # camera offset for integer outputs, counts


def blur(image: np.ndarray, optics: Optics, spacing=None, axes_2d: bool = False) -> np.ndarray:
    """PSF blur plus haze. ``axes_2d``: blur only the last two axes (a time-lapse)."""
    if image.ndim == 2 or axes_2d:
        sigma = [0.0] * (image.ndim - 2) + [optics.psf_sigma] * 2
        wide = [0.0] * (image.ndim - 2) + [optics.psf_sigma * 8] * 2
    else:
        sz = optics.psf_sigma_z / (1.0 if spacing is None else float(spacing[0]))
        sigma = [sz, optics.psf_sigma, optics.psf_sigma]
        wide = [sz * 3, optics.psf_sigma * 8, optics.psf_sigma * 8]
    sharp = ndi.gaussian_filter(image, sigma, mode="nearest")
    if optics.haze > 0:
        sharp = sharp + optics.haze * ndi.gaussian_filter(image, wide, mode="nearest")
    return sharp


def acquire(rng, signal: np.ndarray, background: np.ndarray, optics: Optics, dtype) -> np.ndarray:
    """Shot noise + read noise + quantisation of ``signal + background`` (brightness units)."""
    expected = np.clip((signal + background) * optics.photons, 0, None)
    counts = rng.poisson(expected).astype(np.float32)
    counts += rng.normal(0.0, optics.read_noise, counts.shape).astype(np.float32)
    dtype = np.dtype(dtype)
    if dtype == np.uint16:
        return np.clip(np.rint(counts + optics.offset), 0, 65535).astype(np.uint16)
    if dtype == np.uint8:
        # 8-bit: the camera's gain is set so that bright objects sit near the top
        top = max(float(np.percentile(expected, 99.9)) * 1.1, 1.0)
        return np.clip(np.rint(counts * (230.0 / top) + 10), 0, 255).astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        return (counts / optics.photons).astype(dtype)
    raise ValueError(f"unsupported dtype {dtype}: use uint8, uint16, float32 or float64")
