"""Helpers shared by the task modules: loading the series, threads, peaks files."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from prismflow.io import Acquisition, load_image, read_bval_bvec, save_nifti_atomic


def limit_threads(n: int) -> None:
    """Keep numerical libraries to ``n`` threads inside a worker process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # torch is a dependency, but the tracking tasks do not need it
        pass


def load_series(dwi, bval, bvec) -> tuple[np.ndarray, Acquisition, np.ndarray]:
    """(X, Y, Z, N) float32 data, its acquisition and affine; validated."""
    img = load_image(dwi, ndim=4)
    acq = read_bval_bvec(bval, bvec, n_volumes=img.shape[3], image_name=Path(dwi).name)
    return np.asarray(img.dataobj, dtype=np.float32), acq, img.affine


def load_mask(mask) -> np.ndarray:
    """(X, Y, Z) bool."""
    return np.asarray(load_image(mask, ndim=3).dataobj) > 0


def save_peaks(directions: np.ndarray, amplitudes: np.ndarray, affine, path) -> Path:
    """Write peaks as one (X, Y, Z, 3K) NIfTI (MRtrix ``sh2peaks`` layout: vector length =
    amplitude), directions in the voxel (bvec) frame."""
    d = np.asarray(directions, np.float32) * np.asarray(amplitudes, np.float32)[..., None]
    X, Y, Z, K, _ = d.shape
    return save_nifti_atomic(d.reshape(X, Y, Z, 3 * K), affine, Path(path).absolute())


def load_peaks(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`save_peaks`.

    Returns directions (X, Y, Z, K, 3), amplitudes (X, Y, Z, K) and the affine.
    """
    img = nib.load(str(path))
    data = np.nan_to_num(np.asarray(img.dataobj, np.float64))
    X, Y, Z, C = data.shape
    vec = data.reshape(X, Y, Z, C // 3, 3)
    amp = np.linalg.norm(vec, axis=-1)
    dirs = np.divide(vec, amp[..., None], out=np.zeros_like(vec), where=amp[..., None] > 0)
    return dirs, amp, img.affine
