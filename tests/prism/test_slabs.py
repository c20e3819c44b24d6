"""Slab planning, stitching with fibre matching, and slab-vs-whole agreement."""

import numpy as np
import pytest

from prismflow.prism import PrismConfig, fit_volume, plan_slabs, slab_size_for_memory
from prismflow.prism.slabs import _best_permutation


def test_plan_covers_every_slice_with_requested_overlap():
    slabs = plan_slabs(145, slab_size=30, overlap=5)
    covered = np.zeros(145, int)
    for s in slabs:
        covered[s.start:s.stop] += 1
        assert s.stop - s.start == 30
    assert covered.min() >= 1
    assert all(b.start == a.stop - 5 or b.start > a.start for a, b in zip(slabs, slabs[1:]))
    assert plan_slabs(10, slab_size=30, overlap=5)[0].stop == 10


def test_plan_rejects_bad_sizes():
    from prismflow.io import InputError

    with pytest.raises(InputError):
        plan_slabs(10, slab_size=5, overlap=5)


def test_memory_budget_gives_thicker_slabs_for_more_memory():
    mask = np.ones((40, 40, 60), bool)
    small = slab_size_for_memory(mask, 288, 3, 0.05)
    big = slab_size_for_memory(mask, 288, 3, 0.5)
    assert 5 < small < big <= 60


def test_fibre_matching_undoes_permutations_and_ignores_empty_fibres():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 3, 3))
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    frac = np.tile([0.6, 0.3, 0.1], (50, 1))
    perms = np.array([rng.permutation(3) for _ in range(50)])
    new = -np.take_along_axis(ref, perms[..., None], axis=1)      # permuted and sign-flipped
    new_frac = np.take_along_axis(frac, perms, axis=1)
    found = _best_permutation(ref, frac, new, new_frac)
    np.testing.assert_array_equal(np.take_along_axis(perms, found, axis=1), np.tile([0, 1, 2], (50, 1)))


def test_slab_fit_agrees_with_whole_volume_fit():
    from prismflow.phantoms.crossing import make_crossing_phantom

    ph = make_crossing_phantom(snr=30, n_per_angle=20, n_single=60, seed=3, angles_deg=(30, 60, 90))
    dwi = ph.signal.reshape(6, 5, 4, -1)
    mask = np.ones((6, 5, 4), bool)
    mask[0, 0, :3] = False
    cfg = PrismConfig(n_iter=150)
    whole = fit_volume(dwi, ph.acquisition, mask, cfg, slab_size=100, progress=False)
    slab = fit_volume(dwi, ph.acquisition, mask, cfg, slab_size=2, overlap=1, progress=False)
    assert len(slab.info["slabs"]) == 3
    present = whole.present()
    cos = np.abs(np.einsum("vkd,vkd->vk", whole.directions, slab.directions))[present]
    assert np.degrees(np.arccos(np.clip(cos, 0, 1))).max() < 1.0
    np.testing.assert_allclose(slab.fractions, whole.fractions, atol=0.02)
