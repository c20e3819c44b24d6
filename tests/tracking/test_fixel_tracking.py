"""The fixel tracker: alignment choice, stopping on fibre fraction, seeds, probabilistic mode.

Checked against hand-built fixel fields whose streamlines are known analytically, and against
the connectivity phantom's own geometry (its true fixels must give back its bundles).
"""

from __future__ import annotations

import numpy as np
import pytest

from prismflow.metrics.connectivity import pearson_upper, score_connectivity, weighted_error
from prismflow.tracking.fixels import FixelTrackingConfig, random_seeds, track_fixels


def _two_bundles(angle_deg=30.0, n=30):
    """Voxels along x hold fixel 0 = x; a 10-voxel middle segment also holds a second fixel
    at ``angle_deg`` (a crossing) with a larger fraction."""
    dirs = np.zeros((n, 5, 5, 2, 3))
    amps = np.zeros((n, 5, 5, 2))
    dirs[:, 1:4, 1:4, 0] = [1, 0, 0]
    amps[:, 1:4, 1:4, 0] = 0.5
    a = np.deg2rad(angle_deg)
    dirs[10:20, 1:4, 1:4, 1] = [np.cos(a), np.sin(a), 0]
    amps[10:20, 1:4, 1:4, 1] = 0.6
    return dirs, amps


def test_best_aligned_fixel_is_followed_through_a_crossing():
    dirs, amps = _two_bundles(30.0)
    seed_mask = np.zeros(amps.shape[:3], bool)
    seed_mask[2, 2, 2] = True
    cfg = FixelTrackingConfig(angle_deg=45.0, seeds_per_voxel=4, interpolation="nearest")
    sl = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), cfg, seed_mask=seed_mask)
    assert len(sl) == 4
    for s in sl:
        # straight through the crossing (the larger but misaligned fixel is ignored)
        assert np.ptp(s[:, 1]) < 1e-6 and np.ptp(s[:, 2]) < 1e-6
        assert s[:, 0].max() > 28.9


def test_stops_on_fibre_fraction_not_only_angle():
    dirs, amps = _two_bundles(30.0)
    amps[15, :, :, 0] = 0.05           # a gap of low fraction, same direction
    seed_mask = np.zeros(amps.shape[:3], bool)
    seed_mask[3, 2, 2] = True
    cfg = FixelTrackingConfig(min_fraction=0.1, angle_deg=20.0, interpolation="nearest")
    sl = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), cfg, seed_mask=seed_mask)
    assert sl and all(s[:, 0].max() < 15.0 for s in sl)
    lower = FixelTrackingConfig(min_fraction=0.01, angle_deg=20.0, interpolation="nearest")
    sl = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), lower, seed_mask=seed_mask)
    assert all(s[:, 0].max() > 28.9 for s in sl)


def test_seeds_differ_and_repeat():
    m = np.ones((4, 4, 4), bool)
    assert not np.allclose(random_seeds(m, 2, 0), random_seeds(m, 2, 1))
    np.testing.assert_array_equal(random_seeds(m, 2, 0), random_seeds(m, 2, 0))


def test_probabilistic_spread_follows_the_uncertainty():
    dirs, amps = _two_bundles(30.0)
    amps[..., 1] = 0.0
    seed_mask = np.zeros(amps.shape[:3], bool)
    seed_mask[2, 2, 2] = True
    base = dict(angle_deg=60.0, seeds_per_voxel=50, min_fraction=0.1, probabilistic=True)
    ends = {}
    for sd in (0.0, 3.0, 10.0):
        sd_map = np.full(amps.shape, sd)
        sl = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), FixelTrackingConfig(**base),
                          seed_mask=seed_mask, seed=3, angular_sd_deg=sd_map)
        ends[sd] = np.array([s[-1, 1:] for s in sl])
        again = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), FixelTrackingConfig(**base),
                             seed_mask=seed_mask, seed=3, angular_sd_deg=sd_map)
        np.testing.assert_array_equal(np.concatenate(sl), np.concatenate(again))
    spread = {sd: ends[sd].std() for sd in ends}
    assert spread[0.0] < spread[3.0] < spread[10.0] or spread[3.0] < spread[10.0]
    assert spread[0.0] < 0.3
    with pytest.raises(ValueError):
        track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), FixelTrackingConfig(**base))


def test_weighted_error_and_pearson_by_hand():
    w = np.array([[0, 2, 0], [2, 0, 2], [0, 2, 0]], float)
    assert weighted_error(w * 5, w) == pytest.approx(0.0)
    c = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], float)
    # estimate 1/2 on (0,1) and (0,2); truth 1/2 on (0,1) and (1,2): ½ (0 + ½ + ½) = 0.5
    assert weighted_error(c, w) == pytest.approx(0.5)
    assert pearson_upper(w, w) == pytest.approx(1.0)


def test_scores_count_valid_invalid_and_unconnected():
    labels = np.zeros((12, 3, 3), np.int16)
    labels[0, 1, 1], labels[11, 1, 1], labels[6, 0, 0] = 1, 2, 3
    w = np.zeros((3, 3))
    w[0, 1] = w[1, 0] = 1.0
    line = lambda a, b: np.stack([np.linspace(a, b, 20), np.ones(20), np.ones(20)], 1)  # noqa: E731
    sl = [line(0, 11), line(0, 11), line(0, 5), np.array([[0, 1, 1], [6, 0, 0.0]])]
    sc, est = score_connectivity(sl, labels, np.eye(4), w, search_mm=0.5)
    assert sc.valid == 0.5 and sc.invalid == 0.25 and sc.no_connection == 0.25
    assert sc.valid_bundles == 1 and sc.invalid_bundles == 1
    assert est[0, 1] == pytest.approx(2 / 11)


@pytest.mark.slow
def test_true_fixels_give_back_the_phantom_connectome():
    """Independent of every fit: the phantom's own fixels, tracked, recover its bundles."""
    from prismflow.phantoms.connectivity import make_connectivity_phantom

    ph = make_connectivity_phantom("small", seed=0, snr=None)
    sl = track_fixels(ph.fixel_dirs, ph.fixel_fractions, ph.mask, ph.affine,
                      FixelTrackingConfig(angle_deg=30.0), seed_mask=ph.wm_mask, seed=0)
    sc, _ = score_connectivity(sl, ph.labels, ph.affine, ph.weights)
    assert sc.valid_bundles == sc.n_true_bundles
    assert sc.valid > 0.6 and sc.pearson_r > 0.8 and sc.weighted_error < 0.25


def test_seed_fixel_drawn_in_proportion_to_the_fractions():
    """Seeds in a crossing voxel (fixel fractions 0.5 along x, 0.6 at 30°): 'largest' starts
    every streamline on the 30° fixel; 'fraction' starts ≈ 0.5 / 1.1 = 45 % along x."""
    dirs, amps = _two_bundles(30.0)
    seed_mask = np.zeros(amps.shape[:3], bool)
    seed_mask[15, 2, 2] = True
    share = {}
    for rule in ("largest", "fraction"):
        cfg = FixelTrackingConfig(angle_deg=20.0, seeds_per_voxel=300, interpolation="nearest",
                                  seed_fixel=rule, min_length_mm=0.5)
        sl = track_fixels(dirs, amps, amps.max(-1) > 0, np.eye(4), cfg, seed_mask=seed_mask)
        share[rule] = np.mean([np.ptp(s[:, 1]) < 1e-6 for s in sl])
    assert share["largest"] == 0.0
    assert 0.35 < share["fraction"] < 0.56
