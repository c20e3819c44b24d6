"""Response functions: oracle (from a simulation's ground truth) and helpers shared by methods.

Units: b in s/mm², diffusivities in mm²/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prismflow.io import Acquisition, InputError


@dataclass(frozen=True)
class ResponseTruth:
    """Ground-truth tissue responses of a simulation (what an oracle baseline receives).

    Parameters
    ----------
    wm_evals : (d_par, d_perp, d_perp) — single-fibre tensor eigenvalues, mm²/s.
    gm_diffusivity : isotropic GM diffusivity, mm²/s (used by multi-tissue methods).
    csf_diffusivity : isotropic CSF / free-water diffusivity, mm²/s.
    s0 : b=0 signal of a pure voxel, a.u. (same scale as the data).
    """

    wm_evals: tuple[float, float, float] = (1.7e-3, 0.2e-3, 0.2e-3)
    gm_diffusivity: float = 0.8e-3
    csf_diffusivity: float = 3.0e-3
    s0: float = 1.0

    def __post_init__(self):
        ev = tuple(float(x) for x in self.wm_evals)
        if len(ev) != 3 or min(ev) < 0 or max(ev) > 5e-3:
            raise InputError(f"wm_evals must be 3 diffusivities in mm²/s (e.g. 1.7e-3); got {ev}")
        object.__setattr__(self, "wm_evals", ev)

    @classmethod
    def from_phantom(cls, phantom) -> "ResponseTruth":
        """Build from a phantom object exposing its ground truth.

        Looks for ``phantom.response_truth`` (a ResponseTruth), else ``phantom.evals`` /
        ``phantom.wm_evals`` (mm²/s) and optional ``s0``, ``gm_diffusivity``,
        ``csf_diffusivity`` attributes (also inside ``phantom.params`` / ``phantom.truth``
        dicts when present).
        """
        rt = getattr(phantom, "response_truth", None)
        if isinstance(rt, ResponseTruth):
            return rt
        sources = [phantom]
        for name in ("params", "truth", "config"):
            obj = getattr(phantom, name, None)
            if obj is not None:
                sources.append(obj)

        def look(*names, default=None):
            for src in sources:
                for n in names:
                    val = src.get(n) if isinstance(src, dict) else getattr(src, n, None)
                    if val is not None:
                        return val
            return default

        evals = look("wm_evals", "evals", "fibre_evals", "fiber_evals")
        if evals is None:
            raise InputError("phantom exposes no fibre eigenvalues (wm_evals/evals); build "
                             "ResponseTruth(wm_evals=(d_par, d_perp, d_perp)) yourself")
        return cls(wm_evals=tuple(np.asarray(evals, dtype=float).reshape(-1)[:3]),
                   gm_diffusivity=float(look("gm_diffusivity", "d_gm", default=0.8e-3)),
                   csf_diffusivity=float(look("csf_diffusivity", "d_csf", "d_iso",
                                              default=3.0e-3)),
                   s0=float(look("s0", "S0", default=1.0)))


def zonal_tensor_response(bval: float, evals: tuple[float, float, float], s0: float,
                          lmax: int = 8) -> np.ndarray:
    """Zonal (m=0) SH coefficients of an axially symmetric tensor response along z.

    Orthonormal real SH (the MRtrix3 convention: ``c_l = ∫ R(u) Y_l0(u) du``), which is what
    MRtrix3 response files hold, one row per shell. Gauss–Legendre quadrature, 64 nodes.

    Returns
    -------
    (lmax/2 + 1,) coefficients for l = 0, 2, ..., lmax.
    """
    from numpy.polynomial.legendre import leggauss, legval

    d_par, d_perp = float(evals[0]), float(np.mean(evals[1:]))
    x, w = leggauss(64)  # x = cos(theta)
    amp = s0 * np.exp(-bval * (d_perp + (d_par - d_perp) * x ** 2))
    out = []
    for l in range(0, lmax + 1, 2):
        pl = legval(x, np.eye(l + 1)[l])
        out.append(2 * np.pi * np.sqrt((2 * l + 1) / (4 * np.pi)) * np.sum(w * amp * pl))
    return np.array(out)


def isotropic_response(bval: float, diffusivity: float, s0: float) -> float:
    """l=0 coefficient (orthonormal SH) of an isotropic response at ``bval``."""
    return float(s0 * np.exp(-bval * diffusivity) * np.sqrt(4 * np.pi))


def shell_groups(acq: Acquisition) -> list[tuple[float, np.ndarray]]:
    """[(b, index array)] for b=0 (first, when present) and each shell (rounded to 100 s/mm²)."""
    groups = []
    if np.any(acq.b0_mask):
        groups.append((0.0, np.flatnonzero(acq.b0_mask)))
    rounded = np.round(acq.bvals / 100.0) * 100.0
    for b in acq.shells():
        groups.append((float(b), np.flatnonzero(~acq.b0_mask & (rounded == b))))
    return groups


def select_shell(acq: Acquisition, bval: float) -> np.ndarray:
    """Indices of the b=0 volumes plus the shell nearest ``bval`` (s/mm²)."""
    shells = acq.shells()
    if len(shells) == 0:
        raise InputError("the acquisition has no diffusion-weighted shell")
    b = shells[np.argmin(np.abs(shells - bval))]
    if abs(b - bval) > 0.2 * bval:
        raise InputError(f"no shell near b={bval:g} s/mm²; shells are {list(shells)}")
    rounded = np.round(acq.bvals / 100.0) * 100.0
    idx = np.flatnonzero(acq.b0_mask | (rounded == b))
    if not np.any(acq.b0_mask):
        raise InputError("single-shell CSD needs b=0 volumes; none found")
    return idx


def single_fibre_candidates(data: np.ndarray, acq: Acquisition, *, fa_threshold: float = 0.7,
                            max_voxels: int = 300) -> np.ndarray:
    """(V,) bool: the most anisotropic voxels (DTI FA >= ``fa_threshold``, at most
    ``max_voxels`` highest-FA ones) — the usual single-fibre selection for a response estimate.

    Falls back to the top 10 % FA voxels when none pass the threshold.
    """
    from dipy.reconst.dti import TensorModel

    fit = TensorModel(acq.to_dipy()).fit(np.maximum(data, 1e-6))
    fa = np.nan_to_num(fit.fa)
    sel = fa >= fa_threshold
    if sel.sum() < 5:
        sel = fa >= np.quantile(fa, 0.9)
    if sel.sum() > max_voxels:
        thr = np.sort(fa[sel])[-max_voxels]
        sel &= fa >= thr
    return sel
