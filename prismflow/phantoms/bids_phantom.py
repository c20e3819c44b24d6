"""A tiny multi-shell, three-tissue 3-D phantom with two crossing bundles and a parcellation.

Made for end-to-end tests of the BIDS app: small enough (default 12×12×8 voxels, 63 volumes)
that a whole participant run takes seconds, yet with everything the workflows need: CSF/GM/WM,
single-fibre and crossing voxels, and a ``dseg`` with one label at each end of each bundle so
that tractography gives a known connectome (labels 1–2 joined by bundle A, 3–4 by bundle B).

Units: b in s/mm², diffusivities in mm²/s, voxel size in mm. Axis letters: X/Y/Z space,
N measurements, K fibres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from prismflow.io import Acquisition

from .schemes import multishell_acquisition

logger = logging.getLogger(__name__)

#: Stick-and-tensor diffusivities (mm²/s) and relative S0 of each tissue.
WM_EVALS = (1.7e-3, 0.2e-3, 0.2e-3)
GM_D = 0.8e-3
CSF_D = 3.0e-3
S0 = {"wm": 1000.0, "gm": 1100.0, "csf": 2000.0}

#: Labels of the parcellation (``dseg``).
LABELS = {1: "bundleA_left", 2: "bundleA_right", 3: "bundleB_front", 4: "bundleB_back"}


@dataclass(frozen=True)
class BundlePhantom:
    """One synthetic subject.

    Attributes
    ----------
    dwi : (X, Y, Z, N) float32 — signal, a.u.
    acq : the acquisition.
    dseg : (X, Y, Z) int16 — parcellation labels (:data:`LABELS`), 0 elsewhere.
    tissue : (X, Y, Z, 3) float32 — true CSF, GM, WM volume fractions.
    directions : (X, Y, Z, 2, 3) float32 — true fibre directions (zero where absent).
    fibre_fractions : (X, Y, Z, 2) float32 — true fibre fractions of the WM.
    affine : (4, 4) voxel-to-world (mm).
    """

    dwi: np.ndarray
    acq: Acquisition
    dseg: np.ndarray
    tissue: np.ndarray
    directions: np.ndarray
    fibre_fractions: np.ndarray
    affine: np.ndarray


def make_bundle_phantom(shape=(12, 12, 8), *, acq: Acquisition | None = None,
                        voxel_mm: float = 2.0, snr: float = 30.0, seed: int = 0) -> BundlePhantom:
    """Build one subject: CSF ring, GM ring, bundle A along x, bundle B along y, crossing.

    Parameters
    ----------
    shape : (X, Y, Z) grid, at least 10×10×1.
    acq : acquisition; default :func:`multishell_acquisition`.
    voxel_mm : isotropic voxel size in mm.
    snr : S0_WM / σ of the Rician noise on every volume (``inf`` for no noise).
    seed : seed of the noise and of the small per-subject fraction jitter.
    """
    X, Y, Z = shape
    if X < 10 or Y < 10:
        raise ValueError(f"shape must be at least 10×10 in x and y, got {shape}")
    acq = acq or multishell_acquisition()
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    ring = np.minimum.reduce([xs, ys, X - 1 - xs, Y - 1 - ys])       # distance to the edge
    a_rows = (ys >= Y // 2 - 2) & (ys < Y // 2 + 2) & (ring >= 1)    # bundle A runs along x
    b_cols = (xs >= X // 2 - 1) & (xs < X // 2 + 3) & (ring >= 1)    # bundle B runs along y
    csf2 = ring == 0
    tissue = np.zeros((X, Y, 3))
    fibre = np.zeros((X, Y, 2))
    tissue[csf2] = (1.0, 0.0, 0.0)
    wm2 = (a_rows | b_cols) & ~csf2
    gm2 = ~wm2 & ~csf2
    tissue[gm2] = (0.1, 0.9, 0.0)
    jitter = rng.uniform(-0.05, 0.05)
    tissue[wm2] = (0.05, 0.1 + jitter, 0.85 - jitter)
    fibre[a_rows & ~b_cols] = (1.0, 0.0)
    fibre[b_cols & ~a_rows] = (0.0, 1.0)
    fibre[a_rows & b_cols] = (0.5, 0.5)
    dirs2 = np.zeros((X, Y, 2, 3))
    dirs2[..., 0, :] = (1.0, 0.0, 0.0)
    dirs2[..., 1, :] = (0.0, 1.0, 0.0)
    dirs2 *= (fibre > 0)[..., None]

    dseg2 = np.zeros((X, Y), np.int16)
    end = ring <= 2
    dseg2[a_rows & ~b_cols & end & (xs < X // 2)] = 1
    dseg2[a_rows & ~b_cols & end & (xs >= X // 2)] = 2
    dseg2[b_cols & ~a_rows & end & (ys < Y // 2)] = 3
    dseg2[b_cols & ~a_rows & end & (ys >= Y // 2)] = 4

    b = acq.bvals
    g = acq.bvecs
    sig_csf = np.exp(-b * CSF_D)
    sig_gm = np.exp(-b * GM_D)
    l1, l2, _ = WM_EVALS

    def stick(direction):  # (3,) -> (N,) axially symmetric tensor signal
        cos2 = (g @ direction) ** 2
        return np.exp(-b * (l2 + (l1 - l2) * cos2))

    sig_a = stick(np.array([1.0, 0.0, 0.0]))
    sig_b = stick(np.array([0.0, 1.0, 0.0]))
    wm_sig = fibre[..., :1] * sig_a + fibre[..., 1:] * sig_b                     # (X, Y, N)
    signal2 = (tissue[..., :1] * S0["csf"] * sig_csf + tissue[..., 1:2] * S0["gm"] * sig_gm
               + tissue[..., 2:] * S0["wm"] * wm_sig)
    signal = np.repeat(signal2[:, :, None, :], Z, axis=2)
    if np.isfinite(snr):
        sigma = S0["wm"] / snr
        noise = rng.normal(0, sigma, signal.shape) + 1j * rng.normal(0, sigma, signal.shape)
        signal = np.abs(signal + noise)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -np.array([X, Y, Z]) * voxel_mm / 2
    rep = lambda a: np.repeat(a[:, :, None], Z, axis=2)  # noqa: E731
    return BundlePhantom(
        dwi=signal.astype(np.float32), acq=acq, dseg=rep(dseg2).astype(np.int16),
        tissue=rep(tissue).astype(np.float32), directions=rep(dirs2).astype(np.float32),
        fibre_fractions=rep(fibre).astype(np.float32), affine=affine)
