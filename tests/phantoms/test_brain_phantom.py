"""The brain phantom: geometry, ground truth and determinism (small scales only)."""

import numpy as np
import pytest

from prismflow.phantoms.brain import HCP_BRAIN_VOXELS, hcp_like_scheme, make_brain_phantom


@pytest.fixture(scope="module")
def small():
    return make_brain_phantom(scale=0.2, seed=3)


def test_hcp_like_scheme():
    acq = hcp_like_scheme()
    assert len(acq) == 288
    assert int(acq.b0_mask.sum()) == 18
    for b in (1000, 2000, 3000):
        assert int(np.isclose(acq.bvals, b).sum()) == 90
    dirs = acq.bvecs[~acq.b0_mask]
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    # shells do not share directions
    d1, d2 = dirs[np.isclose(acq.bvals[~acq.b0_mask], 1000)], dirs[np.isclose(acq.bvals[~acq.b0_mask], 2000)]
    assert np.abs(d1 @ d2.T).max() < 0.9999


def test_voxel_count_follows_scale(small):
    assert small.n_voxels == round(HCP_BRAIN_VOXELS * 0.2 ** 3)
    assert small.dwi.shape[:3] == small.mask.shape
    assert small.dwi.shape[3] == len(small.acquisition)
    assert small.dwi.dtype == np.float32
    assert np.all(small.dwi[~small.mask] == 0)


def test_ground_truth_is_consistent(small):
    t = small.tissue
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-5)
    assert t.min() >= 0
    np.testing.assert_allclose(small.fibre_fractions.sum(1), t[:, 2], atol=1e-5)
    present = small.fibre_fractions > 0
    assert np.array_equal(present.sum(1), small.n_fibres)
    norms = np.linalg.norm(small.fibre_dirs, axis=-1)
    np.testing.assert_allclose(norms[present], 1.0, atol=1e-5)
    assert np.all(norms[~present] == 0)
    # all three tissues and some crossings are present
    assert (t[:, 0] > 0.5).mean() > 0.05 and (t[:, 1] > 0.5).mean() > 0.1 and (t[:, 2] > 0.5).mean() > 0.3
    assert (small.n_fibres >= 2).mean() > 0.05


def test_noise_free_signal_matches_dipy_multi_tensor():
    """The generator's noise-free signal against dipy's ``multi_tensor`` (an independent
    implementation of the same sum of tensors), in single-fibre and crossing voxels."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    ph = make_brain_phantom(scale=0.12, snr=None, bias=0.0, s0=1.0)
    acq = ph.acquisition
    gtab = gradient_table(acq.bvals, bvecs=acq.bvecs)
    picks = list(np.flatnonzero(ph.n_fibres == 1)[:2]) + list(np.flatnonzero(ph.n_fibres >= 2)[:3])
    assert len(picks) == 5
    for v in picks:
        evals = [[ph.csf_diffusivity] * 3, [ph.gm_diffusivity] * 3]
        dirs = [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
        frac = [ph.tissue[v, 0], ph.tissue[v, 1]]
        for k in range(ph.n_fibres[v]):
            evals.append([ph.evals[0], ph.evals[1], ph.evals[1]])
            dirs.append(ph.fibre_dirs[v, k])
            frac.append(ph.fibre_fractions[v, k])
        ref, _ = multi_tensor(gtab, np.array(evals), S0=1.0, angles=np.array(dirs, float),
                              fractions=100 * np.array(frac), snr=None)
        np.testing.assert_allclose(ph.dwi[ph.mask][v], ref, rtol=1e-5, atol=1e-7)


def test_same_seed_same_volume_other_seed_other_noise(small):
    again = make_brain_phantom(scale=0.2, seed=3)
    assert np.array_equal(again.dwi, small.dwi)
    other = make_brain_phantom(scale=0.2, seed=4)
    assert np.array_equal(other.mask, small.mask)
    assert np.array_equal(other.tissue, small.tissue)
    assert not np.array_equal(other.dwi, small.dwi)
