"""Tiny multi-shell phantoms for the baseline tests (dipy ``multi_tensor``, known angles)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from prismflow.baselines import ResponseTruth
from prismflow.io import Acquisition

os.environ.setdefault("MRTRIX_QUIET", "1")
EVALS = (1.7e-3, 0.2e-3, 0.2e-3)


def _hemisphere_points(n: int, offset: float = 0.0) -> np.ndarray:
    """n near-uniform unit vectors on the upper hemisphere (Fibonacci spiral)."""
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1 + 5 ** 0.5) * i + offset
    r = np.sqrt(1 - z ** 2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def make_acquisition(n_dirs: int = 64, n_b0: int = 6) -> Acquisition:
    """3 shells (b = 1000/2000/3000 s/mm²) × n_dirs directions + n_b0 b=0 volumes."""
    bvals = [0.0] * n_b0
    bvecs = [np.zeros(3)] * n_b0
    for k, b in enumerate((1000.0, 2000.0, 3000.0)):
        pts = _hemisphere_points(n_dirs, offset=0.7 * k)
        bvals += [b] * n_dirs
        bvecs += list(pts)
    return Acquisition(np.array(bvals), np.array(bvecs))


def random_unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class TinyPhantom:
    signal: np.ndarray        # (V, N)
    acquisition: Acquisition
    true_dirs: np.ndarray     # (V, 2, 3), second row zero for single fibres
    n_fibres: np.ndarray      # (V,)
    angle_deg: np.ndarray     # (V,), 0 for single fibres


def make_tiny_phantom(*, n_single=20, n_cross=20, angle=90.0, snr=30.0, seed=0,
                      acq=None) -> TinyPhantom:
    """Single-fibre voxels and equal-fraction crossings at ``angle`` degrees, random orientation."""
    from dipy.core.geometry import cart2sphere
    from dipy.sims.voxel import multi_tensor

    rng = np.random.default_rng(seed)
    acq = acq or make_acquisition()
    gtab = acq.to_dipy()
    sig, dirs, nf, ang = [], [], [], []
    for v in range(n_single + n_cross):
        d1 = random_unit(rng, 1)[0]
        if v < n_single:
            ds, fr = [d1], [100.0]
        else:
            helper = random_unit(rng, 1)[0]
            perp = np.cross(d1, helper)
            perp /= np.linalg.norm(perp)
            a = np.deg2rad(angle)
            d2 = np.cos(a) * d1 + np.sin(a) * perp
            ds, fr = [d1, d2], [50.0, 50.0]
        angles = []
        for d in ds:
            _, th, ph = cart2sphere(*d)
            angles.append((np.rad2deg(th), np.rad2deg(ph)))
        s, _ = multi_tensor(gtab, np.array([EVALS] * len(ds)), S0=100.0, angles=angles,
                            fractions=fr, snr=snr, rng=rng)
        sig.append(s)
        td = np.zeros((2, 3))
        td[: len(ds)] = ds
        dirs.append(td)
        nf.append(len(ds))
        ang.append(0.0 if len(ds) == 1 else angle)
    return TinyPhantom(np.array(sig), acq, np.array(dirs), np.array(nf), np.array(ang))


def best_match_errors(res_dirs: np.ndarray, true_dirs: np.ndarray, n_fibres: np.ndarray):
    """Per true fibre, the angle (deg) to the closest predicted peak; (V, 2) with NaN for absent."""
    out = np.full(true_dirs.shape[:2], np.nan)
    for v in range(len(true_dirs)):
        pred = res_dirs[v][np.linalg.norm(res_dirs[v], axis=1) > 0]
        for k in range(n_fibres[v]):
            if len(pred) == 0:
                out[v, k] = 90.0
            else:
                c = np.abs(pred @ true_dirs[v, k])
                out[v, k] = np.rad2deg(np.arccos(np.clip(c.max(), 0, 1)))
    return out


def summarise(res, ph):
    """(mean single-fibre error, mean crossing error, fraction of crossings with 2 peaks,
    fraction of single fibres with 1 peak)."""
    err = best_match_errors(res.directions, ph.true_dirs, ph.n_fibres)
    single = ph.n_fibres == 1
    cross = ~single
    npk = res.n_peaks
    return (float(np.nanmean(err[single, 0])), float(np.nanmean(err[cross])),
            float(np.mean(npk[cross] == 2)), float(np.mean(npk[single] == 1)))


needs_mrtrix = pytest.mark.skipif(shutil.which("dwi2fod") is None,
                                  reason="MRtrix3 (dwi2fod) not on PATH")
