"""The crossing-fibre benchmark phantom (PRISM paper, Sec. 3; dipy-style multi-tensor voxels).

Voxels: ``n_per_angle`` two-fibre voxels at each crossing angle (default 15°–90° in 5° steps)
plus ``n_single`` single-fibre voxels; the first fibre's orientation is uniformly random, the
second lies at the crossing angle in a random plane. Each fibre is a cylindrically symmetric
tensor with eigenvalues ``evals`` (mm²/s) — deliberately not the stick-and-zeppelin of the
model, with other diffusivities, as in the paper. Optional free-water partial volume. Rician
noise with σ = S0 / SNR on every volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.gradients import Acquisition
from .schemes import multishell_scheme

DEFAULT_ANGLES = tuple(range(15, 91, 5))


@dataclass(frozen=True)
class CrossingPhantom:
    """Signals and ground truth.

    signal : (V, N) noisy magnitude signal; clean : (V, N) noise-free signal.
    acquisition : the gradient scheme (N measurements).
    true_dirs : (V, 2, 3) unit fibre directions (row 1 is zero for single-fibre voxels).
    n_fibres : (V,) 1 or 2. angle_deg : (V,) crossing angle (0 for single-fibre voxels).
    fibre_fractions : (V, 2) volume fractions of the fibres; csf_fraction : (V,).
    evals : tensor eigenvalues (λ∥, λ⊥, λ⊥) in mm²/s; csf_diffusivity : mm²/s; s0, snr, seed.
    """

    signal: np.ndarray
    clean: np.ndarray
    acquisition: Acquisition
    true_dirs: np.ndarray
    n_fibres: np.ndarray
    angle_deg: np.ndarray
    fibre_fractions: np.ndarray
    csf_fraction: np.ndarray
    evals: tuple[float, float, float]
    csf_diffusivity: float
    s0: float
    snr: float | None
    seed: int

    def subset(self, index) -> "CrossingPhantom":
        """The phantom restricted to the voxels picked by ``index``."""
        pick = lambda a: a[index]  # noqa: E731
        return CrossingPhantom(pick(self.signal), pick(self.clean), self.acquisition,
                               pick(self.true_dirs), pick(self.n_fibres), pick(self.angle_deg),
                               pick(self.fibre_fractions), pick(self.csf_fraction), self.evals,
                               self.csf_diffusivity, self.s0, self.snr, self.seed)


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) uniformly distributed unit vectors."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def second_fibre(first: np.ndarray, angle_deg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at ``angle_deg`` from ``first`` (V, 3), in uniformly random planes."""
    helper = random_unit_vectors(rng, first.shape[0])
    perp = helper - (helper * first).sum(1, keepdims=True) * first
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    a = np.deg2rad(angle_deg)[:, None]
    return np.cos(a) * first + np.sin(a) * perp


def tensor_signal(acq: Acquisition, directions: np.ndarray, evals) -> np.ndarray:
    """Attenuation of cylindrically symmetric tensors, (V, N): exp(−b (λ⊥ + (λ∥−λ⊥)(g·n)²))."""
    l_par, l_perp = evals[0], evals[1]
    cos2 = (directions @ acq.bvecs.T) ** 2
    return np.exp(-acq.bvals * (l_perp + (l_par - l_perp) * cos2))


def add_rician_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """|clean + σ(n₁ + i n₂)| with independent standard normals."""
    return np.hypot(clean + sigma * rng.standard_normal(clean.shape),
                    sigma * rng.standard_normal(clean.shape))


def make_crossing_phantom(*, snr: float | None = 30.0, angles_deg=DEFAULT_ANGLES,
                          n_per_angle: int = 200, n_single: int = 200, seed: int = 0,
                          evals=(1.7e-3, 0.2e-3, 0.2e-3), fibre_fractions=(0.5, 0.5),
                          csf_fraction: float = 0.0, csf_diffusivity: float = 3.0e-3,
                          s0: float = 100.0, acquisition: Acquisition | None = None,
                          n_dirs: int = 64, n_b0: int = 6) -> CrossingPhantom:
    """Build the benchmark (default: 3 shells b=1000/2000/3000 s/mm² × 64 directions + 6 b0).

    Deterministic from ``seed``. ``snr=None`` gives noise-free signals.
    """
    rng = np.random.default_rng(seed)
    acq = acquisition or multishell_scheme(n_dirs=n_dirs, n_b0=n_b0, seed=seed)
    angles = np.concatenate([np.zeros(n_single)] + [np.full(n_per_angle, float(a)) for a in angles_deg])
    v = angles.shape[0]
    n_fib = np.where(angles > 0, 2, 1)
    first = random_unit_vectors(rng, v)
    second = second_fibre(first, np.where(angles > 0, angles, 90.0), rng)
    second[n_fib == 1] = 0.0
    dirs = np.stack([first, second], axis=1)
    ff = np.zeros((v, 2))
    ff[n_fib == 2] = fibre_fractions
    ff[n_fib == 1, 0] = 1.0
    wm = 1.0 - csf_fraction
    clean = wm * (ff[:, :1] * tensor_signal(acq, first, evals))
    two = n_fib == 2
    clean[two] += wm * ff[two, 1:2] * tensor_signal(acq, second[two], evals)
    clean += csf_fraction * np.exp(-acq.bvals * csf_diffusivity)[None, :]
    clean *= s0
    signal = clean if snr is None else add_rician_noise(clean, s0 / snr, rng)
    return CrossingPhantom(signal=signal, clean=clean, acquisition=acq, true_dirs=dirs,
                           n_fibres=n_fib, angle_deg=angles, fibre_fractions=ff * wm,
                           csf_fraction=np.full(v, csf_fraction), evals=tuple(evals),
                           csf_diffusivity=csf_diffusivity, s0=s0, snr=snr, seed=seed)
