"""Non-PGSE waveforms (OGSE, double PGSE) checked against references that share no code with
the simulator's waveform machinery (``Waveform``, ``b_factor_ms3``, the propagators).

Independent oracles, written here from the formulas alone:

* b-values in closed form: square-wave OGSE with n periods per lobe of duration δ has
  b = q²δ³/(6n²) (the phase integral F(t) is a triangle wave of height δ/(2n) that returns to
  0 at the end of every period); double PGSE has twice the PGSE value, b = 2q²δ²(Δ − δ/3).
* The Gaussian-phase (second-cumulant) signal for any waveform f(t):
  ln S = −(q²/2) Σ_n c_n ∫∫ f(t₁) f(t₂) e^{−λ_n|t₁−t₂|} dt₁ dt₂, with the position
  autocorrelation of the restricted geometry ⟨x(t)x(0)⟩ − ⟨x⟩² = Σ_n c_n e^{−λ_n t}
  (Stepišnik, Physica B 183:343 (1993); Grebenkov, Rev. Mod. Phys. 79:1077 (2007), §IV):
  - an interval of length L (a box, gradient along its long side): odd n only,
    c_n = 8L²/(n⁴π⁴), λ_n = D(nπ/L)² (Σ c_n = L²/12, the variance of a uniform position);
  - a disk of radius R (cylinder, gradient ⟂): c_n = 2R²/(μ_n²(μ_n² − 1)), λ_n = Dμ_n²/R²,
    μ_n the positive zeros of J₁' (Neuman, J. Chem. Phys. 60:4508 (1974); Σ c_n = R²/4).
  It is exact to O(q²) in every geometry, so at small b it checks the simulator's waveform
  handling (segment propagation, signs, echo condition) to the FEM's accuracy; as L → ∞ the
  interval version must reproduce free diffusion, exp(−bD) with the closed-form b.

The time integrals are evaluated on a fine midpoint grid with a recursive exponential filter,
from f(t) written directly as a function of time (sign of a sine for OGSE).
"""

import math

import numpy as np
import pytest
import scipy.special as ssp
import torch

from prismflow.remidi import OGSE, DoublePGSE, box_mesh, cylinder_mesh, simulate_signal

torch.set_num_threads(1)

D_UM2_MS = 2.0  # 2e-3 mm²/s


# --------------------------------------------------------------------------- the oracle

def f_ogse(t, delta, Delta, n):
    """Square-wave OGSE effective gradient: +sign(sin) lobe on [0, δ], refocused (negated) lobe
    on [Δ, Δ+δ]."""
    lobe1 = (t < delta) * np.sign(np.sin(2 * np.pi * n * t / delta))
    t2 = t - Delta
    lobe2 = ((t2 >= 0) & (t2 < delta)) * -np.sign(np.sin(2 * np.pi * n * t2 / delta))
    return lobe1 + lobe2


def f_dpgse(t, delta, Delta, mixing):
    """Two PGSE blocks [+1 on δ, 0, −1 on δ] back to back after a mixing time."""
    def pgse(s):
        return ((s >= 0) & (s < delta)) * 1.0 - ((s >= Delta) & (s < Delta + delta)) * 1.0
    return pgse(t) + pgse(t - (Delta + delta + mixing))


def time_grid(T, dt):
    n = int(round(T / dt))
    return (np.arange(n) + 0.5) * (T / n), T / n


def kernel_integrals(f, dt, lam):
    """I(λ) = ∫∫ f(t₁) f(t₂) e^{−λ|t₁−t₂|} dt₁dt₂ for each λ (midpoint rule, recursive)."""
    lam = np.asarray(lam, dtype=np.float64)
    decay = np.exp(-lam * dt)
    s = np.zeros_like(lam)
    total = np.zeros_like(lam)
    fd = f * dt
    for i in range(f.size):
        total += 2.0 * fd[i] * s + fd[i] * fd[i]
        s = decay * (s + fd[i])
    return total


def phase_integral_sq(f, dt):
    """∫ F(t)² dt with F = ∫₀ᵗ f (the b-factor, ms³) by the same grid."""
    F = np.cumsum(f) * dt - 0.5 * f * dt
    return float(np.sum(F * F) * dt)


def interval_modes(L, D, n_max=399):
    n = np.arange(1, n_max + 1, 2)
    return 8 * L * L / (n ** 4 * np.pi ** 4), D * (n * np.pi / L) ** 2


def disk_modes(R, D, n_max=60):
    mu = ssp.jnp_zeros(1, n_max)
    return 2 * R * R / (mu * mu * (mu * mu - 1)), D * mu * mu / (R * R)


def gpa_log_signal(f, dt, q, modes):
    c, lam = modes
    return -0.5 * q * q * float(np.sum(c * kernel_integrals(f, dt, lam)))


# --------------------------------------------------------------------------- cases

CASES = [
    ("OGSE δ10 Δ15 n2", OGSE(10.0, 15.0, 2), lambda t: f_ogse(t, 10.0, 15.0, 2), 25.0,
     10.0 ** 3 / (6 * 2 ** 2)),
    ("OGSE δ8 Δ12 n1", OGSE(8.0, 12.0, 1), lambda t: f_ogse(t, 8.0, 12.0, 1), 20.0,
     8.0 ** 3 / 6),
    ("double PGSE δ3 Δ8 tm4", DoublePGSE(3.0, 8.0, 4.0), lambda t: f_dpgse(t, 3.0, 8.0, 4.0),
     26.0, 2 * 3.0 ** 2 * (8.0 - 1.0)),
]


@pytest.mark.parametrize("name,wave,f,T,bfac", CASES, ids=[c[0] for c in CASES])
def test_closed_form_b_matches_waveform_and_grid(name, wave, f, T, bfac):
    # the closed form, the waveform object and a brute-force grid integral all agree
    t, dt = time_grid(T, 1e-3)
    assert wave.echo_time_ms == pytest.approx(T)
    assert wave.b_factor_ms3 == pytest.approx(bfac, rel=1e-12)
    assert phase_integral_sq(f(t), dt) == pytest.approx(bfac, rel=1e-5)


@pytest.mark.parametrize("name,wave,f,T,bfac", CASES, ids=[c[0] for c in CASES])
def test_oracle_reduces_to_free_diffusion(name, wave, f, T, bfac):
    # the cumulant oracle on a very long interval is free diffusion, exp(−bD) with closed-form b;
    # the walls still cost ≈ (4/(3√π))·(2/L)·√(D·T) ≈ 4e-4 here (Mitra's short-time term)
    t, dt = time_grid(T, 5e-3)
    q = 0.05
    ln_s = gpa_log_signal(f(t), dt, q, interval_modes(2e4, D_UM2_MS, n_max=20001))
    assert ln_s == pytest.approx(-q * q * bfac * D_UM2_MS, rel=1e-3)


@pytest.mark.parametrize("name,wave,f,T,bfac", CASES, ids=[c[0] for c in CASES])
def test_box_signal_matches_independent_cumulant(name, wave, f, T, bfac):
    # FEM in a 30 µm box (gradient along x = an interval) at small b vs the cumulant oracle
    L = 30.0
    mesh = box_mesh((L, 2.0, 2.0), (60, 1, 1))
    b = np.array([5.0, 10.0])  # s/mm²: bD ≤ 0.02, the O(q⁴) term is negligible
    s = simulate_signal(mesh, wave, b, [[1.0, 0, 0]], length_scale_um=2.0)[0, :, 0].numpy()
    t, dt = time_grid(T, 1e-3)
    for bi, si in zip(b, s):
        q = math.sqrt(bi * 1e-3 / bfac)  # closed-form b → q (rad/(µm·ms))
        ref = gpa_log_signal(f(t), dt, q, interval_modes(L, D_UM2_MS))
        # 3e-3 is the P1 discretisation error here; a b-value wrong by 1 % would fail
        assert math.log(si) == pytest.approx(ref, rel=3e-3), (name, bi)


@pytest.mark.parametrize("name,wave,f,T,bfac", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_cylinder_ogse_matches_gaussian_phase(name, wave, f, T, bfac):
    # 24-gon at the equal-area radius of a 3 µm disk, gradient ⟂ the axis, small b
    R = 3.0
    r_c = R / math.sqrt(24 * math.sin(2 * math.pi / 24) / (2 * math.pi))
    mesh = cylinder_mesh(r_c, 2.0, 1000, n_sides=24, n_layers=3)
    b = np.array([20.0, 50.0])
    s = simulate_signal(mesh, wave, b, [[1.0, 0, 0]])[0, :, 0].numpy()
    t, dt = time_grid(T, 1e-3)
    for bi, si in zip(b, s):
        q = math.sqrt(bi * 1e-3 / bfac)
        ref = gpa_log_signal(f(t), dt, q, disk_modes(R, D_UM2_MS))
        assert math.log(si) == pytest.approx(ref, rel=1e-2), (name, bi)
