"""The per-fixel angular uncertainty (curvature of the loss) against the spread of repeated fits.

Independent check: Cramér–Rao. Many voxels share one true fibre; each gets its own Gaussian
noise; the scatter of the fitted directions around the truth must match the spread predicted
from the curvature of the loss at each solution.
"""

from __future__ import annotations

import numpy as np

from prismflow.io.gradients import Acquisition
from prismflow.phantoms.schemes import multishell_scheme
from prismflow.prism import PrismConfig, PrismModel, predict
from prismflow.prism.uncertainty import direction_curvature, fixel_uncertainty


def _fit(sigma, fraction, n_vox=300, seed=0):
    acq = multishell_scheme(n_dirs=32, n_b0=4, seed=0)
    rng = np.random.default_rng(seed)
    n0 = np.array([0.3, 0.5, 0.81])
    n0 /= np.linalg.norm(n0)
    s0 = np.full(n_vox, 100.0)
    fr = np.tile([1 - fraction, 0.0, 0.0, fraction], (n_vox, 1))
    clean = predict(acq, s0=s0, fractions=fr, directions=np.tile(n0, (n_vox, 1, 1)),
                    f_in=np.full((n_vox, 1), 0.6))
    data = clean + sigma * rng.standard_normal(clean.shape)
    fit = PrismModel(acq, PrismConfig(n_fibres=1, n_iter=300, device="cpu")).fit(
        np.abs(data), progress=False)
    cos = np.abs(fit.directions[:, 0] @ n0)
    err = np.arccos(np.clip(cos, -1, 1))
    return acq, fit, err


def test_predicted_spread_matches_repeated_fits():
    for sigma, fraction in ((2.0, 0.7), (5.0, 0.4)):
        acq, fit, err = _fit(sigma, fraction)
        unc = fixel_uncertainty(fit, acq)
        # two tangent axes: E[err²] = 2 × per-axis variance
        observed = np.degrees(np.sqrt(np.mean(err ** 2) / 2))
        predicted = np.degrees(np.sqrt(np.mean(np.radians(unc.angular_sd_deg[:, 0]) ** 2)))
        assert 0.6 < observed / predicted < 1.6, (sigma, fraction, observed, predicted)


def test_curvature_scales_with_fraction_and_noise():
    acq = multishell_scheme(n_dirs=32, n_b0=4, seed=0)
    d = np.tile([[0.0, 0.0, 1.0]], (2, 1, 1))
    base = direction_curvature(acq, np.full(2, 100.0), np.array([[0.6], [0.3]]), d,
                               np.full((2, 1), 0.5), np.array([2.0, 2.0]))
    # curvature ∝ (S0 f)² / σ²: half the fraction, a quarter of the curvature
    assert np.isclose(base.curvature[1, 0] / base.curvature[0, 0], 0.25)
    noisy = direction_curvature(acq, np.full(2, 100.0), np.array([[0.6], [0.3]]), d,
                                np.full((2, 1), 0.5), np.array([4.0, 4.0]))
    assert np.allclose(noisy.angular_sd_deg, 2 * base.angular_sd_deg)
    empty = direction_curvature(Acquisition(acq.bvals, acq.bvecs), np.ones(1), np.zeros((1, 1)),
                                d[:1], np.full((1, 1), 0.5), np.ones(1))
    assert np.isinf(empty.angular_sd_deg[0, 0])
