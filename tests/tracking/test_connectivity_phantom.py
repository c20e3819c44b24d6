"""The DiSCo-like phantom: its bundle signal is dipy's multi-tensor model, its truth is coherent."""

from __future__ import annotations

import numpy as np
import pytest

from prismflow.phantoms.connectivity import make_connectivity_phantom


@pytest.fixture(scope="module")
def small():
    return make_connectivity_phantom("small", seed=0, snr=None)


def test_pure_bundle_voxel_matches_dipy_multi_tensor(small):
    """A voxel filled by one straight bundle carries dipy's single-tensor signal."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    ph = small
    pure = (ph.fixel_fractions[..., 0] > 0.999) & (ph.fixel_fractions[..., 1] == 0)
    vox = np.argwhere(pure)
    acq = ph.acquisition
    gtab = gradient_table(acq.bvals, bvecs=acq.bvecs)
    checked = 0
    for v in vox:
        d = ph.fixel_dirs[tuple(v)][0].astype(np.float64)
        # which bundle: the straight (crossing) one whose centre line passes closest
        dist = [np.linalg.norm(b.points - v, axis=1).min() if b.kind == "crossing" else np.inf
                for b in ph.bundles]
        b = ph.bundles[int(np.argmin(dist))]
        if not np.isfinite(min(dist)) or min(dist) > b.radius - 1.0:
            continue
        theta = np.degrees(np.arccos(np.clip(d[2], -1, 1)))
        phi = np.degrees(np.arctan2(d[1], d[0]))
        ev = [b.evals[0], b.evals[1], b.evals[1]]
        ref, _ = multi_tensor(gtab, np.array([ev]), S0=ph.s0, angles=[(theta, phi)],
                              fractions=[100], snr=None)
        np.testing.assert_allclose(ph.clean[tuple(v)], ref, rtol=2e-3, atol=1e-3 * ph.s0)
        checked += 1
        if checked == 5:
            break
    assert checked >= 3


def test_truth_is_coherent(small):
    ph = small
    assert np.allclose(ph.weights, ph.weights.T) and np.all(np.diag(ph.weights) == 0)
    assert set(np.unique(ph.labels)) == set(range(ph.n_rois + 1))
    pairs = {tuple(sorted(b.rois)) for b in ph.bundles}
    assert {(i + 1, j + 1) for i, j in zip(*np.nonzero(np.triu(ph.weights)))} == pairs
    # fractions: fibres + background + CSF = 1 inside the brain; fixels sorted, unit directions
    t = ph.tissue[ph.mask]
    assert np.allclose(t.sum(1)[t.sum(1) > 0.99], 1.0, atol=1e-6)
    f = ph.fixel_fractions
    assert np.all(np.diff(f, axis=-1) <= 1e-7)
    n = np.linalg.norm(ph.fixel_dirs, axis=-1)
    assert np.allclose(n[f > 0], 1.0, atol=1e-5)
    kinds = {b.kind for b in ph.bundles}
    assert {"crossing", "fanning", "curved"} <= kinds
    angles = sorted({b.angle_deg for b in ph.bundles if b.kind == "crossing"})
    assert angles == [35.0, 70.0]


def test_seeded_and_noisy():
    a = make_connectivity_phantom("small", seed=1, snr=30)
    b = make_connectivity_phantom("small", seed=1, snr=30)
    np.testing.assert_array_equal(a.dwi, b.dwi)
    np.testing.assert_array_equal(a.labels, b.labels)
    noise = (a.dwi - a.clean)[a.mask & (a.tissue[..., 0] == 0)][:, a.acquisition.bvals > 2500]
    assert 2.0 < noise.std() < 4.5          # Rician, σ = S0 / SNR = 3.3 on low signal


def test_crossing_fixel_report_truth_and_a_merged_field(small):
    """The truth's own fixels are resolved in every designed overlap; replacing them there by
    one fixel on the bisector is reported as merged, tilted by half the crossing angle
    (geometry, not fitted)."""
    from prismflow.metrics.connectivity import crossing_fixels

    ph = small
    rep = crossing_fixels(ph, ph.fixel_dirs, ph.fixel_fractions)
    assert [r["angle_deg"] for r in rep] == [35.0, 70.0]
    for r in rep:
        assert r["n_voxels"] > 5 and r["merged"] == 0.0 and r["resolved"] > 0.95, r
        assert abs(r["toward_partner_deg"]) < 2.0, r
    # a merged field: in every voxel with two or more true fixels, the two largest become one
    # fixel on their bisector (a third, if any, is kept)
    d, f = ph.fixel_dirs.copy(), ph.fixel_fractions.copy()
    two = f[..., 1] > 0
    a, b = d[two][:, 0], d[two][:, 1]
    bis = a + np.sign((a * b).sum(1))[:, None] * b
    d[two, 0] = bis / np.linalg.norm(bis, axis=1, keepdims=True)
    f[two, 0] += f[two, 1]
    d[two, 1] = 0.0
    f[two, 1] = 0.0
    for r in crossing_fixels(ph, d, f):
        assert r["merged"] == 1.0 and r["resolved"] == 0.0, r
        assert abs(r["toward_partner_deg"] - r["angle_deg"] / 2) < 3.0, r
