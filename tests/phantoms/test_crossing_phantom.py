"""The crossing phantom's noise-free signal equals dipy's multi_tensor for the same fibres."""

import numpy as np
from dipy.sims.voxel import multi_tensor

from prismflow.phantoms.crossing import make_crossing_phantom


def test_clean_signal_matches_dipy_multi_tensor():
    ph = make_crossing_phantom(snr=None, angles_deg=(45,), n_per_angle=3, n_single=2, seed=4)
    gtab = ph.acquisition.to_dipy()
    mevals = np.array([ph.evals, ph.evals])
    for v in range(ph.signal.shape[0]):
        k = ph.n_fibres[v]
        angles = []
        for d in ph.true_dirs[v, :k]:
            theta = np.degrees(np.arccos(np.clip(d[2], -1, 1)))
            phi = np.degrees(np.arctan2(d[1], d[0]))
            angles.append((theta, phi))
        sig, _ = multi_tensor(gtab, mevals[:k], S0=ph.s0, angles=angles,
                              fractions=list(100 * ph.fibre_fractions[v, :k]), snr=None)
        np.testing.assert_allclose(ph.clean[v], sig, rtol=1e-8)


def test_geometry_and_determinism():
    a = make_crossing_phantom(snr=30, angles_deg=(15, 90), n_per_angle=10, n_single=5, seed=1)
    b = make_crossing_phantom(snr=30, angles_deg=(15, 90), n_per_angle=10, n_single=5, seed=1)
    np.testing.assert_array_equal(a.signal, b.signal)
    two = a.n_fibres == 2
    cos = np.abs(np.einsum("vd,vd->v", a.true_dirs[two, 0], a.true_dirs[two, 1]))
    np.testing.assert_allclose(np.degrees(np.arccos(cos)), a.angle_deg[two], atol=1e-6)
    assert len(a.acquisition) == 6 + 3 * 64
    np.testing.assert_allclose(sorted(a.acquisition.shells()), [1000, 2000, 3000])
