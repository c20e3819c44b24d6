"""Per-fixel direction uncertainty of a PRISM fit: the curvature of the loss at the solution.

For fibre k of voxel v with direction n, rotate n by small angles (θ₁, θ₂) about two axes
orthogonal to it. The Gauss–Newton curvature of the data loss ½ Σ_n r_n² / σ² with respect to
(θ₁, θ₂) is the 2×2 Fisher information

    F = Jᵀ J / σ²,  J_{n,a} = ∂S_n/∂θ_a = S0 · bias · f_k · ∂p/∂c · (g_n · e_a),
    p(c) = f_in e^(−b D∥ c²) + (1 − f_in) e^(−b D⊥) e^(−b (D∥ − D⊥) c²),  c = g_n · n,

with σ the voxel's residual RMS (noise plus model misfit, data units). The reported
**curvature** is F's smaller eigenvalue (rad⁻², the least determined axis) and the **angular
SD** is 1/√curvature in degrees — the Cramér–Rao spread of the direction if the other
parameters were known (conditional: couplings with fractions and other fibres are ignored, so
it is a lower bound in crossings). A fibre with a small fraction, a low f_in or a noisy voxel
gets a wide spread. Validated against the spread of repeated noisy fits in
``tests/tracking/test_uncertainty.py``.

Axis letters: V voxels, K fibres, N measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.gradients import Acquisition
from .config import Diffusivities


@dataclass
class FixelUncertainty:
    """curvature : (V, K) rad⁻²; angular_sd_deg : (V, K) degrees (inf where the fibre has no
    fraction)."""

    curvature: np.ndarray
    angular_sd_deg: np.ndarray


def _diffusivities(config: dict) -> Diffusivities:
    d = config.get("diffusivities", {}) if isinstance(config, dict) else {}
    names = Diffusivities.__dataclass_fields__
    return Diffusivities(**{k: v for k, v in dict(d).items() if k in names})


def tangent_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to unit ``n`` (..., 3) and to each other."""
    helper = np.where(np.abs(n[..., :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    e1 = np.cross(n, helper)
    e1 /= np.maximum(np.linalg.norm(e1, axis=-1, keepdims=True), 1e-12)
    return e1, np.cross(n, e1)


def direction_curvature(acq: Acquisition, s0, fibre_fractions, directions, f_in, sigma, *,
                        diffusivities: Diffusivities | None = None,
                        chunk: int = 2048) -> FixelUncertainty:
    """Gauss–Newton curvature of the loss w.r.t. each fibre's direction (module docstring).

    s0 : (V,) data units (bias included); fibre_fractions, f_in : (V, K); directions (V, K, 3)
    unit, bvec frame; sigma : (V,) noise level in data units.
    """
    d = diffusivities or Diffusivities()
    b = np.asarray(acq.bvals, np.float64)
    g = np.asarray(acq.bvecs, np.float64)
    v, k = np.asarray(fibre_fractions).shape
    curv = np.zeros((v, k))
    for a in range(0, v, chunk):
        sl = slice(a, a + chunk)
        n = np.asarray(directions[sl], np.float64)
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        e1, e2 = tangent_basis(n)
        c = n @ g.T                                                   # (v, K, N)
        fin = np.asarray(f_in[sl], np.float64)[..., None]
        stick = np.exp(-b * d.axial * c * c)
        zep = np.exp(-b * d.radial) * np.exp(-b * (d.axial - d.radial) * c * c)
        dp = -2 * c * (fin * b * d.axial * stick + (1 - fin) * b * (d.axial - d.radial) * zep)
        amp = (np.asarray(s0[sl], np.float64)[:, None] * np.asarray(fibre_fractions[sl]))[..., None]
        j1 = amp * dp * (e1 @ g.T)
        j2 = amp * dp * (e2 @ g.T)
        s2 = np.maximum(np.asarray(sigma[sl], np.float64), 1e-12)[:, None] ** 2
        f11, f22, f12 = (j1 * j1).sum(-1) / s2, (j2 * j2).sum(-1) / s2, (j1 * j2).sum(-1) / s2
        tr, det = f11 + f22, f11 * f22 - f12 * f12
        curv[sl] = np.maximum(0.5 * tr - np.sqrt(np.maximum(0.25 * tr * tr - det, 0.0)), 0.0)
    with np.errstate(divide="ignore"):
        sd = np.degrees(1.0 / np.sqrt(curv))
    return FixelUncertainty(curvature=curv, angular_sd_deg=sd)


def fixel_uncertainty(fit, acq: Acquisition) -> FixelUncertainty:
    """:func:`direction_curvature` of a :class:`~prismflow.prism.PrismFit` (σ = its residual
    RMS per voxel, S0 times its bias field)."""
    return direction_curvature(acq, fit.s0 * fit.bias, fit.fibre_fractions, fit.directions,
                               fit.f_in, fit.residual_rms, diffusivities=_diffusivities(fit.config))
