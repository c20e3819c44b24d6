"""The peaks image format and the two direction frames it is written in: the one codec.

A peaks image is MRtrix3's ``sh2peaks`` layout: a (X, Y, Z, 3K) NIfTI whose frames 3k..3k+2 hold
fibre k's direction scaled by its amplitude (so the vector's length is the amplitude; 0 where
the fibre is absent). Directions are in one of two frames:

- the **bvec frame** (FSL): image axes, with x negated when the affine's determinant is
  positive — the frame of the gradient table, of PRISM's fit and of dipy's tracking;
- the **scanner frame** (MRtrix3): world (RAS) axes — the frame of MRtrix3's peaks and of our
  ``param-peaks`` derivatives.

Axis letters: K fibres (peaks per voxel).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .nifti import save_nifti_atomic


def _rotation(affine: np.ndarray) -> tuple[np.ndarray, bool]:
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    return lin / np.linalg.norm(lin, axis=0, keepdims=True), bool(np.linalg.det(lin) > 0)


def bvec_to_scanner(directions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., 3) directions from the FSL bvec frame to scanner (world) coordinates, as MRtrix3
    imports FSL bvecs: negate x when det(affine) > 0, then rotate by the affine's rotation
    (voxel sizes removed)."""
    rot, flip = _rotation(affine)
    d = np.array(directions, dtype=np.float64, copy=True)
    if flip:
        d[..., 0] *= -1
    return d @ rot.T


def scanner_to_bvec(directions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., 3) directions from scanner (world) coordinates to the FSL bvec frame (the inverse
    of :func:`bvec_to_scanner`)."""
    rot, flip = _rotation(affine)
    d = np.asarray(directions, dtype=np.float64) @ rot
    if flip:
        d = d * np.array([-1.0, 1.0, 1.0])
    return d


def peak_vectors(data: np.ndarray) -> np.ndarray:
    """(X, Y, Z, 3K) peaks data → (X, Y, Z, K, 3) vectors (NaN read as 0)."""
    data = np.nan_to_num(np.asarray(data, dtype=np.float64))
    if data.ndim != 4 or data.shape[3] % 3:
        raise ValueError(f"a peaks image is (X, Y, Z, 3K); got shape {data.shape}")
    return data.reshape(data.shape[:3] + (data.shape[3] // 3, 3))


def split_peaks(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., K, 3) peak vectors → unit directions (..., K, 3) (0 where absent) and amplitudes
    (..., K)."""
    amp = np.linalg.norm(vectors, axis=-1)
    dirs = np.divide(vectors, amp[..., None], out=np.zeros_like(vectors, dtype=np.float64),
                     where=amp[..., None] > 0)
    return dirs, amp


def save_peaks(directions: np.ndarray, amplitudes: np.ndarray, affine, path) -> Path:
    """Write (X, Y, Z, K, 3) directions × (X, Y, Z, K) amplitudes as a (X, Y, Z, 3K) float32
    peaks image (atomically). The frame is the caller's: convert first with
    :func:`bvec_to_scanner` for an MRtrix3-style scanner-frame file."""
    d = np.asarray(directions, np.float32) * np.asarray(amplitudes, np.float32)[..., None]
    X, Y, Z, K, _ = d.shape
    return save_nifti_atomic(d.reshape(X, Y, Z, 3 * K), affine, Path(path).absolute())


def load_peaks(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a peaks image: directions (X, Y, Z, K, 3), amplitudes (X, Y, Z, K), affine (4, 4).

    Inverse of :func:`save_peaks` (directions in the frame the file was written in).
    """
    img = nib.load(str(path))
    dirs, amp = split_peaks(peak_vectors(img.dataobj))
    return dirs, amp, img.affine
