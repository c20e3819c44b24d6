"""Gradient schemes for synthetic data: well-spread directions on shells plus b=0 volumes."""

from __future__ import annotations

import numpy as np

from ..io.gradients import Acquisition


def spread_directions(n: int, *, seed: int = 0, iters: int = 2000) -> np.ndarray:
    """(n, 3) well-spread unit directions on the hemisphere (electrostatic repulsion, dipy)."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    theta = np.arccos(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    hemi, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), iters)
    return np.asarray(hemi.vertices, dtype=np.float64)


def multishell_scheme(shells=(1000.0, 2000.0, 3000.0), n_dirs: int = 64, n_b0: int = 6, *,
                      seed: int = 0) -> Acquisition:
    """b=0 volumes followed by ``n_dirs`` spread directions on every shell (s/mm²)."""
    dirs = spread_directions(n_dirs, seed=seed)
    bvals = np.concatenate([np.zeros(n_b0)] + [np.full(n_dirs, b) for b in shells])
    bvecs = np.concatenate([np.zeros((n_b0, 3))] + [dirs for _ in shells])
    return Acquisition(bvals, bvecs)
