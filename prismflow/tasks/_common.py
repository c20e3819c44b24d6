"""Helpers shared by the task modules: loading the series, threads (the peaks codec is
:mod:`prismflow.io.peaks`, re-exported here for the task modules)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from prismflow.io import Acquisition, load_image, read_bval_bvec
from prismflow.io.peaks import load_peaks, save_peaks

__all__ = ["limit_threads", "load_series", "load_mask", "load_peaks", "save_peaks"]


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
