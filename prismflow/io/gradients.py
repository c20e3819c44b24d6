"""Gradient tables: b-values in s/mm², unit gradient directions, validated once.

Axis letters: N measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

#: b-values at or below this (s/mm²) count as b=0 volumes.
B0_THRESHOLD = 50.0


@dataclass(frozen=True, eq=False)
class Acquisition:
    """An immutable diffusion acquisition.

    Parameters
    ----------
    bvals : (N,) array — b-values in s/mm².
    bvecs : (N, 3) array — gradient directions; normalised here; zero rows allowed for b=0.
    delta_ms, Delta_ms : optional pulse duration and separation in ms, when known.
    """

    bvals: np.ndarray
    bvecs: np.ndarray
    delta_ms: float | None = None
    Delta_ms: float | None = None

    def __post_init__(self):
        bvals = np.asarray(self.bvals, dtype=np.float64).reshape(-1)
        bvecs = np.asarray(self.bvecs, dtype=np.float64)
        if bvecs.ndim != 2 or 3 not in bvecs.shape:
            raise InputError(f"bvecs must have shape (N, 3) or (3, N); got {bvecs.shape}")
        if bvecs.shape[1] != 3:
            bvecs = bvecs.T
        if bvecs.shape[0] != bvals.shape[0]:
            raise InputError(
                f"{bvals.shape[0]} b-values but {bvecs.shape[0]} gradient directions; "
                "bval and bvec files must list the same number of volumes")
        if not (np.all(np.isfinite(bvals)) and np.all(np.isfinite(np.nan_to_num(bvecs[bvals > B0_THRESHOLD], nan=np.inf)))):
            raise InputError("b-values or diffusion-weighted gradient directions contain NaN/inf")
        if np.any(bvals < 0):
            raise InputError("negative b-values found; b-values must be >= 0 s/mm²")
        bvecs = np.nan_to_num(bvecs, nan=0.0)
        norms = np.linalg.norm(bvecs, axis=1)
        dw = bvals > B0_THRESHOLD
        if np.any(norms[dw] < 1e-6):
            raise InputError("a diffusion-weighted volume has a zero gradient direction")
        unit = np.zeros_like(bvecs)
        nz = norms > 1e-6
        unit[nz] = bvecs[nz] / norms[nz, None]
        bvals.setflags(write=False)
        unit.setflags(write=False)
        object.__setattr__(self, "bvals", bvals)
        object.__setattr__(self, "bvecs", unit)

    def __len__(self) -> int:
        return int(self.bvals.shape[0])

    @property
    def b0_mask(self) -> np.ndarray:
        """(N,) bool — True for b=0 volumes (b <= B0_THRESHOLD s/mm²)."""
        return self.bvals <= B0_THRESHOLD

    def shells(self, tol: float = 100.0) -> np.ndarray:
        """Distinct non-zero shell b-values (s/mm²), rounded to ``tol``."""
        b = np.round(self.bvals[~self.b0_mask] / tol) * tol
        return np.unique(b)

    def to_dipy(self):
        """A ``dipy.core.gradients.GradientTable`` for the same acquisition."""
        from dipy.core.gradients import gradient_table

        return gradient_table(self.bvals, bvecs=self.bvecs, b0_threshold=B0_THRESHOLD)

    def select(self, index) -> "Acquisition":
        """A new acquisition with the measurements picked by ``index`` (bool or int array)."""
        return Acquisition(self.bvals[index], self.bvecs[index], self.delta_ms, self.Delta_ms)


def read_bval_bvec(bval_path: str | Path, bvec_path: str | Path,
                   n_volumes: int | None = None, image_name: str | None = None) -> Acquisition:
    """Read FSL-style bval/bvec text files into an :class:`Acquisition`.

    Raises :class:`InputError` naming the file when a file is missing, unreadable or when its
    count disagrees with ``n_volumes`` (the image's 4th dimension).
    """
    bval_path, bvec_path = Path(bval_path), Path(bvec_path)
    for p in (bval_path, bvec_path):
        if not p.is_file():
            raise InputError(f"{p}: file not found; pass an existing FSL-style text file")
    try:
        bvals = np.loadtxt(bval_path, ndmin=1).reshape(-1)
    except ValueError as err:
        raise InputError(f"{bval_path}: not a whitespace-separated list of numbers ({err})") from err
    try:
        bvecs = np.loadtxt(bvec_path, ndmin=2)
    except ValueError as err:
        raise InputError(f"{bvec_path}: not a 3-row table of numbers ({err})") from err
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    if bvecs.shape[0] != 3:
        raise InputError(f"{bvec_path}: expected 3 rows (x, y, z), found shape {bvecs.shape}")
    if bvecs.shape[1] != bvals.shape[0]:
        raise InputError(f"{bvec_path} lists {bvecs.shape[1]} directions but {bval_path} lists "
                         f"{bvals.shape[0]} b-values; they must match")
    if n_volumes is not None and n_volumes != bvals.shape[0]:
        name = image_name or "the image"
        raise InputError(f"{name} has {n_volumes} volumes but {bval_path} lists "
                         f"{bvals.shape[0]} b-values; use the bval/bvec files of this image")
    try:
        return Acquisition(bvals, bvecs.T)
    except InputError as err:
        raise InputError(f"{bval_path}/{bvec_path}: {err}") from err


def write_bval_bvec(acq: Acquisition, bval_path: str | Path, bvec_path: str | Path) -> None:
    """Write FSL-style bval (one row) and bvec (three rows) files.

    Numbers are written with 17 significant digits, so that reading them back gives the same
    float64 values: a fit of the written table is the fit of the original one, bit for bit.
    """
    np.savetxt(bval_path, acq.bvals[None, :], fmt="%.17g")
    np.savetxt(bvec_path, acq.bvecs.T, fmt="%.17g")


def fibonacci_hemisphere(n: int) -> np.ndarray:
    """(n, 3) well-spread unit vectors on the z ≥ 0 hemisphere (golden-angle spiral).

    Deterministic: point i sits at height z = 1 − (i + ½)/n and turns by the golden angle
    π(3 − √5) from the previous one, so the points cover equal areas. The one direction set of
    prismflow's synthetic schemes and of the warm start's deconvolution sphere.
    """
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    rho = np.sqrt(1.0 - z * z)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
