"""Exact references for a right circular cylinder, independent of the FEM code.

The Neumann Laplacian of a cylinder (disk × interval) has a separable eigenbasis, and so has
the Bloch–Torrey operator for any gradient direction, so the signal of any waveform
factorises: S(q u) = S_disk(q·|u_⊥|) · S_interval(q·u_z). Each factor is computed by the
matrix formalism in its own exact eigenbasis (Callaghan 1997; Grebenkov 2007):

- disk of radius R: φ_nk ∝ J_n(α_nk r/R) cos(nθ), α_nk the zeros of J_n' (α_00 = 0),
  λ = D α²/R²; the position matrix ⟨φ|x|φ'⟩ couples n ↔ n ± 1 (radial integrals by
  Gauss–Legendre quadrature);
- interval [−L/2, L/2]: φ_k ∝ cos(kπ(z + L/2)/L), λ = D (kπ/L)².

Also the Gaussian-phase approximation for a cylinder with the gradient perpendicular to its
axis (Neuman 1974; van Gelderen et al. 1994).

Units as the simulator: µm, ms, D in mm²/s and b in s/mm² at the boundary.

References
----------
Callaghan PT (1997) J Magn Reson 129:74–84. Grebenkov DS (2007) Rev Mod Phys 79:1077.
Neuman CH (1974) J Chem Phys 60:4508. van Gelderen P et al. (1994) J Magn Reson B 103:255.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.special as ssp
import torch

from ._blas import blas_threads
from .sequences import Waveform

@functools.lru_cache(maxsize=8)
def _gauss_legendre(n: int):
    with blas_threads(1):  # numpy's eigvalsh on a busy machine otherwise crawls
        return np.polynomial.legendre.leggauss(n)


__all__ = ["disk_basis", "interval_basis", "mf_signal", "cylinder_signal",
           "gaussian_phase_cylinder_perpendicular"]


def disk_basis(radius_um: float, diffusivity_um2_ms: float, alpha_max: float = 40.0,
               n_quad: int = 400):
    """Cos-family Neumann eigenbasis of a disk: (λ (K,) 1/ms, W_x (K, K) µm, c (K,)).

    Only the cos(nθ) family is coupled to the constant mode by an x-gradient, so it suffices
    for the signal (the disk is isotropic: any in-plane direction gives the same signal).
    """
    modes = [(0, 0.0)]
    n = 0
    while True:
        zs = ssp.jnp_zeros(n, max(1, int(alpha_max)))
        if n > 0:
            zs = zs[zs <= alpha_max]
        else:
            zs = zs[zs <= alpha_max]
        if n > 0 and zs.size == 0:
            break
        modes.extend((n, a) for a in zs)
        n += 1
    R = float(radius_um)
    xq, wq = _gauss_legendre(n_quad)
    r = 0.5 * R * (xq + 1.0)
    w = 0.5 * R * wq
    K = len(modes)
    radial = np.empty((K, r.size))
    norm = np.empty(K)
    for i, (nn, a) in enumerate(modes):
        radial[i] = ssp.jv(nn, a * r / R)
        ang = 2 * math.pi if nn == 0 else math.pi
        norm[i] = 1.0 / math.sqrt(ang * np.sum(w * r * radial[i] ** 2))
    radial *= norm[:, None]
    ns = np.array([m[0] for m in modes])
    alphas = np.array([m[1] for m in modes])
    lam = diffusivity_um2_ms * (alphas / R) ** 2
    # ⟨φ_a| r cosθ |φ_b⟩ = (∫ r² R_a R_b dr)·(∫ cosθ cos n_aθ cos n_bθ dθ)
    rad = (radial * (w * r * r)) @ radial.T
    dn = np.abs(ns[:, None] - ns[None, :])
    angular = np.where(dn == 1, np.where((ns[:, None] == 0) | (ns[None, :] == 0), math.pi,
                                         math.pi / 2), 0.0)
    W = rad * angular
    c = np.zeros(K)
    c[0] = math.sqrt(math.pi) * R  # ∫ φ_00 = area / sqrt(area)
    return lam, W, c


def interval_basis(length_um: float, diffusivity_um2_ms: float, n_modes: int = 80,
                   n_quad: int = 600):
    """Neumann cosine basis of [−L/2, L/2]: (λ (K,) 1/ms, W_z (K, K) µm, c (K,))."""
    L = float(length_um)
    xq, wq = _gauss_legendre(n_quad)
    z = 0.5 * L * xq
    w = 0.5 * L * wq
    k = np.arange(n_modes)
    phi = np.cos(np.outer(k, math.pi * (z + L / 2) / L))
    phi[0] *= 1.0 / math.sqrt(L)
    phi[1:] *= math.sqrt(2.0 / L)
    W = (phi * (w * z)) @ phi.T
    lam = diffusivity_um2_ms * (k * math.pi / L) ** 2
    c = np.zeros(n_modes)
    c[0] = math.sqrt(L)
    return lam, W, c


def mf_signal(lam, W, c, waveform: Waveform, q) -> np.ndarray:
    """Normalised signal cᵀ Π_j exp(−τ_j(Λ + i q a_j W)) c / cᵀ exp(−TΛ) c for each q.

    Dense matrix exponentials (torch, batched over q; torch's thread setting applies).
    """
    lam_t = torch.as_tensor(np.asarray(lam), dtype=torch.complex128)
    W_t = torch.as_tensor(np.asarray(W), dtype=torch.complex128)
    c_t = torch.as_tensor(np.asarray(c), dtype=torch.complex128)
    q_t = torch.as_tensor(np.atleast_1d(q), dtype=torch.float64).to(torch.complex128)
    v = c_t.expand(q_t.shape[0], -1)[:, :, None]
    for tau, a in zip(waveform.durations_ms, waveform.amplitudes):
        if tau == 0:
            continue
        if a == 0:
            v = torch.exp(-tau * lam_t)[None, :, None] * v
        else:
            K = torch.diag(lam_t)[None] + 1j * a * q_t[:, None, None] * W_t[None]
            v = torch.linalg.matrix_exp(-tau * K) @ v
    s0 = torch.sum(c_t * c_t * torch.exp(-waveform.echo_time_ms * lam_t))
    return ((c_t[None, :, None] * v).sum(dim=(1, 2)) / s0).numpy()


def cylinder_signal(radius_um: float, length_um: float | None, waveform: Waveform, bvalues,
                    directions, diffusivity: float = 2e-3, *, alpha_max: float = 40.0,
                    n_interval_modes: int = 80) -> np.ndarray:
    """Exact normalised signal of a right circular cylinder along z, shape (n_b, n_dir).

    ``length_um=None`` means an infinitely long cylinder (free diffusion along z).
    Units: µm, ms; b in s/mm²; D in mm²/s. Real part returned.
    """
    D = diffusivity * 1e3
    b = np.asarray(bvalues, dtype=np.float64) * 1e-3
    u = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    q = np.sqrt(b / waveform.b_factor_ms3)
    disk = disk_basis(radius_um, D, alpha_max)
    line = None if length_um is None else interval_basis(length_um, D, n_interval_modes)
    out = np.empty((b.size, u.shape[0]))
    for j, uu in enumerate(u):
        up = math.hypot(uu[0], uu[1])
        sd = mf_signal(*disk, waveform, q * up)
        if line is None:
            sz = np.exp(-b * D * uu[2] ** 2)
        else:
            sz = mf_signal(*line, waveform, q * uu[2])
        out[:, j] = (sd * sz).real
    return out


def gaussian_phase_cylinder_perpendicular(radius_um: float, delta_ms: float, Delta_ms: float,
                                          bvalues, diffusivity: float = 2e-3,
                                          n_roots: int = 60) -> np.ndarray:
    """Gaussian-phase PGSE signal of a cylinder, gradient ⟂ axis (van Gelderen et al. 1994).

    ln S = −2 q² Σ_m [2Dα²δ − 2 + 2e^{−Dα²δ} + 2e^{−Dα²Δ} − e^{−Dα²(Δ−δ)} − e^{−Dα²(Δ+δ)}]
    / [D² α⁶ (R²α² − 1)], with α_m R the roots of J_1'.
    """
    D = diffusivity * 1e3
    R = float(radius_um)
    b = np.asarray(bvalues, dtype=np.float64) * 1e-3
    q2 = b / (delta_ms ** 2 * (Delta_ms - delta_ms / 3.0))
    a = ssp.jnp_zeros(1, n_roots) / R
    Da = D * a * a
    num = (2 * Da * delta_ms - 2 + 2 * np.exp(-Da * delta_ms) + 2 * np.exp(-Da * Delta_ms)
           - np.exp(-Da * (Delta_ms - delta_ms)) - np.exp(-Da * (Delta_ms + delta_ms)))
    den = D * D * a ** 6 * (R * R * a * a - 1)
    return np.exp(-2 * q2 * np.sum(num / den))
