"""Gradient schemes for synthetic data: well-spread directions on shells plus b=0 volumes.

The one home of prismflow's acquisition builders (the brain phantom's HCP-like scheme, the
example datasets' two-shell scheme, the benchmarks' multi-shell scheme); their directions come
from :func:`prismflow.io.gradients.fibonacci_hemisphere` or dipy's charge dispersion.
"""

from __future__ import annotations

import numpy as np

from ..io.gradients import Acquisition, fibonacci_hemisphere


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


def hcp_like_scheme(n_b0: int = 18, n_per_shell: int = 90,
                    shells=(1000.0, 2000.0, 3000.0)) -> Acquisition:
    """18 b=0 + 90 directions per shell at b = 1000/2000/3000 s/mm² (HCP-like, 288 volumes).

    The shells take interleaved subsets of one golden-spiral set of 90·3 directions, so each
    shell is well spread on its own and the shells do not share directions (as in HCP). The b=0
    volumes are spread through the series (every 16th volume), also as in HCP.
    """
    n_dw = n_per_shell * len(shells)
    dirs = fibonacci_hemisphere(n_dw)
    bvals_dw = np.empty(n_dw)
    for i, b in enumerate(shells):
        bvals_dw[i::len(shells)] = b
    n = n_dw + n_b0
    is_b0 = np.zeros(n, dtype=bool)
    is_b0[np.linspace(0, n - 1, n_b0).round().astype(int)] = True
    bvals = np.zeros(n)
    bvecs = np.zeros((n, 3))
    bvals[~is_b0] = bvals_dw
    bvecs[~is_b0] = dirs
    return Acquisition(bvals, bvecs)


def multishell_acquisition(shells=(1000.0, 2000.0), n_per_shell: int = 30,
                           n_b0: int = 3) -> Acquisition:
    """An acquisition with ``n_b0`` b=0 volumes then ``n_per_shell`` directions per shell."""
    dirs = fibonacci_hemisphere(n_per_shell)
    bvals = [0.0] * n_b0
    bvecs = [np.zeros(3)] * n_b0
    for k, b in enumerate(shells):
        # rotate each shell's spiral a little so shells do not share directions
        ang = 0.7 * (k + 1)
        rot = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
        bvals += [float(b)] * n_per_shell
        bvecs += list(dirs @ rot.T)
    return Acquisition(np.array(bvals), np.array(bvecs))
