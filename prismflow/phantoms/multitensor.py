"""Multi-tensor robustness phantoms simulated by dipy (``dipy.sims.voxel.multi_tensor``).

These voxels are *not* PRISM's forward model: every fibre is a full diffusion tensor (no stick,
no zeppelin, no restricted pool) whose eigenvalues may be drawn per fibre from wide ranges,
fibres have unequal fractions, free water is a third isotropic tensor, and the signal is
computed by dipy's code, not ours. Rician noise σ = S0 / SNR is added here.

Voxel groups: ``n_single`` one-fibre voxels, ``n_per_angle`` two-fibre voxels at each crossing
angle, ``n_three`` three-fibre voxels (three fibres ≥ 45° apart pairwise, random frame).

Units: b in s/mm², diffusivities in mm²/s. Axis letters: V voxels, N measurements, T = 3 true
fibres (zero rows where a voxel has fewer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.gradients import Acquisition
from .crossing import add_rician_noise, random_unit_vectors, second_fibre
from .schemes import multishell_scheme

#: Scheme names of the robustness matrix → builder arguments (see :func:`scheme`).
SCHEMES = ("3shell", "hcp", "clinical", "single")


def scheme(name: str, *, seed: int = 0) -> Acquisition:
    """A named gradient scheme.

    ``3shell``: 6 b0 + 64 directions × b = 1000/2000/3000 (the crossing benchmark's);
    ``hcp``: 18 b0 + 90 directions × b = 1000/2000/3000 (HCP-like);
    ``clinical``: 6 b0 + 30 directions × b = 1000/2000;
    ``single``: 6 b0 + 60 directions at b = 1000.
    """
    table = {"3shell": ((1000.0, 2000.0, 3000.0), 64, 6),
             "hcp": ((1000.0, 2000.0, 3000.0), 90, 18),
             "clinical": ((1000.0, 2000.0), 30, 6),
             "single": ((1000.0,), 60, 6)}
    if name not in table:
        raise ValueError(f"unknown scheme {name!r}; choose one of {', '.join(table)}")
    shells, n_dirs, n_b0 = table[name]
    return multishell_scheme(shells, n_dirs=n_dirs, n_b0=n_b0, seed=seed)


@dataclass(frozen=True)
class TissueSpec:
    """How the fibres and partial volume of a phantom are drawn.

    axial, radial : (low, high) ranges of each fibre's λ∥ and λ⊥ (mm²/s), drawn uniformly per
        fibre; a range with low == high fixes the value.
    minor_fraction : (low, high) share of the second fibre in two-fibre voxels (0.5 = equal;
        (0.3, 0.5) draws unequal splits down to 70/30).
    free_water : (low, high) free-water volume fraction per voxel; its diffusivity is
        ``csf_diffusivity``.
    """

    name: str
    axial: tuple[float, float] = (1.4e-3, 2.2e-3)
    radial: tuple[float, float] = (0.2e-3, 0.6e-3)
    minor_fraction: tuple[float, float] = (0.3, 0.5)
    free_water: tuple[float, float] = (0.0, 0.3)
    csf_diffusivity: float = 3.0e-3


#: The tissues of the robustness matrix.
TISSUES = {
    # the crossing benchmark's tensor (close to the model's constants), equal fractions, no water
    "model-like": TissueSpec("model-like", (1.7e-3, 1.7e-3), (0.2e-3, 0.2e-3), (0.5, 0.5), (0.0, 0.0)),
    # slower than the model's constants, 10 % free water (the issue's clinical example)
    "slow": TissueSpec("slow", (1.5e-3, 1.5e-3), (0.4e-3, 0.4e-3), (0.5, 0.5), (0.1, 0.1)),
    # per-fibre random diffusivities, unequal fractions, 0–30 % free water
    "random": TissueSpec("random"),
}


@dataclass(frozen=True)
class MultiTensorPhantom:
    """Signals and ground truth of a multi-tensor phantom.

    signal, clean : (V, N); acquisition; true_dirs : (V, 3, 3); n_fibres : (V,) 1–3;
    angle_deg : (V,) crossing angle of two-fibre voxels (0 single, −1 three-fibre);
    fibre_fractions : (V, 3) of the whole voxel; free_water : (V,); evals : (V, 3, 2) λ∥, λ⊥
    per fibre; tissue, snr, seed, s0.
    """

    signal: np.ndarray
    clean: np.ndarray
    acquisition: Acquisition
    true_dirs: np.ndarray
    n_fibres: np.ndarray
    angle_deg: np.ndarray
    fibre_fractions: np.ndarray
    free_water: np.ndarray
    evals: np.ndarray
    tissue: TissueSpec
    snr: float | None
    seed: int
    s0: float

    @property
    def mean_evals(self) -> tuple[float, float, float]:
        """(λ∥, λ⊥, λ⊥) averaged over fibres (for peers' oracle responses)."""
        present = self.fibre_fractions > 0
        par = float(self.evals[..., 0][present].mean())
        perp = float(self.evals[..., 1][present].mean())
        return (par, perp, perp)


def _three_fibres(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) three unit fibres per voxel, pairwise ≥ 45° apart (rejection sampling)."""
    out = np.zeros((n, 3, 3))
    for i in range(n):
        while True:
            d = random_unit_vectors(rng, 3)
            c = np.abs(d @ d.T)[np.triu_indices(3, 1)]
            if np.all(c <= np.cos(np.deg2rad(45.0))):
                out[i] = d
                break
    return out


def make_multitensor_phantom(acq: Acquisition, tissue: TissueSpec | str = "random", *,
                             snr: float | None = 30.0, n_single: int = 100,
                             angles_deg=(15, 20, 30, 45, 60, 75, 90), n_per_angle: int = 30,
                             n_three: int = 40, s0: float = 100.0,
                             seed: int = 0) -> MultiTensorPhantom:
    """Simulate the phantom with dipy's ``multi_tensor``; deterministic from ``seed``."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    spec = TISSUES[tissue] if isinstance(tissue, str) else tissue
    rng = np.random.default_rng(seed)
    gtab = gradient_table(np.asarray(acq.bvals), bvecs=np.asarray(acq.bvecs), b0_threshold=50)
    angle = np.concatenate([np.zeros(n_single)]
                           + [np.full(n_per_angle, float(a)) for a in angles_deg]
                           + [np.full(n_three, -1.0)])
    v = angle.shape[0]
    n_fib = np.where(angle == 0, 1, np.where(angle > 0, 2, 3))
    dirs = np.zeros((v, 3, 3))
    first = random_unit_vectors(rng, v)
    dirs[:, 0] = first
    two = n_fib == 2
    dirs[two, 1] = second_fibre(first[two], angle[two], rng)
    three = n_fib == 3
    dirs[three] = _three_fibres(rng, int(three.sum()))
    evals = np.stack([rng.uniform(*spec.axial, size=(v, 3)),
                      rng.uniform(*spec.radial, size=(v, 3))], axis=-1)
    fw = rng.uniform(*spec.free_water, size=v)
    ff = np.zeros((v, 3))
    ff[n_fib == 1, 0] = 1.0
    minor = rng.uniform(*spec.minor_fraction, size=v)
    ff[two, 0], ff[two, 1] = 1.0 - minor[two], minor[two]
    w3 = rng.dirichlet((4.0, 4.0, 4.0), size=int(three.sum()))
    w3 = 0.2 + 0.4 * w3                       # every fibre of a three-fibre voxel ≥ 20 %
    ff[three] = w3 / w3.sum(1, keepdims=True)
    ff *= (1.0 - fw)[:, None]
    clean = np.empty((v, len(acq)))
    for i in range(v):
        k = int(n_fib[i])
        mevals = [(evals[i, j, 0], evals[i, j, 1], evals[i, j, 1]) for j in range(k)]
        sticks = [tuple(dirs[i, j]) for j in range(k)]
        fr = [100.0 * ff[i, j] for j in range(k)]
        if fw[i] > 0:
            d = spec.csf_diffusivity
            mevals.append((d, d, d))
            sticks.append((0.0, 0.0, 1.0))
            fr.append(100.0 * fw[i])
        clean[i], _ = multi_tensor(gtab, np.array(mevals), S0=s0, angles=sticks,
                                   fractions=fr, snr=None)
    signal = clean if snr is None else add_rician_noise(clean, s0 / snr, rng)
    return MultiTensorPhantom(signal=signal, clean=clean, acquisition=acq, true_dirs=dirs,
                              n_fibres=n_fib, angle_deg=angle, fibre_fractions=ff, free_water=fw,
                              evals=evals, tissue=spec, snr=snr, seed=seed, s0=s0)
