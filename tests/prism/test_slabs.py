"""Slab planning, stitching with fibre matching, and slab-vs-whole agreement."""

import numpy as np
import pytest

from prismflow.prism import PrismConfig, fit_volume, plan_slabs
from prismflow.prism.memory import slab_size_for_memory
from prismflow.prism.fixels import merge_parallel
from prismflow.prism.slabs import _best_permutation, slab_overlaps


@pytest.mark.parametrize("n, size, overlap", [(145, 30, 5), (40, 30, 5), (16, 8, 2), (7, 3, 2),
                                              (31, 30, 5), (100, 6, 0)])
def test_plan_covers_every_slice_with_exactly_the_requested_overlap(n, size, overlap):
    slabs = plan_slabs(n, slab_size=size, slab_overlap=overlap)
    covered = np.zeros(n, int)
    for s in slabs:
        covered[s.start:s.stop] += 1
        assert 0 < s.stop - s.start <= size
    assert covered.min() == 1 and slabs[0].start == 0 and slabs[-1].stop == n
    # neighbours share exactly `overlap` slices: the old plan pushed the last slab back over
    # its neighbour (40 slices, 30/5 gave z 0-29 and 10-39: a 20-slice overlap)
    assert slab_overlaps(slabs) == [overlap] * (len(slabs) - 1)
    thick = [s.stop - s.start for s in slabs]
    assert max(thick) - min(thick) <= 1          # balanced
    assert len(slabs) == 1 or len(plan_slabs(n, slab_size=size, slab_overlap=overlap)) == \
        int(np.ceil((n - overlap) / (size - overlap)))
    assert plan_slabs(10, slab_size=30, slab_overlap=5)[0].stop == 10


def test_plan_rejects_bad_sizes():
    from prismflow.io import InputError

    with pytest.raises(InputError):
        plan_slabs(10, slab_size=5, slab_overlap=5)


def test_memory_budget_gives_thicker_slabs_for_more_memory():
    mask = np.ones((40, 40, 60), bool)
    small = slab_size_for_memory(mask, 288, 3, 0.05, axis=2, slab_overlap=5)
    big = slab_size_for_memory(mask, 288, 3, 0.5, axis=2, slab_overlap=5)
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
    slab = fit_volume(dwi, ph.acquisition, mask, cfg, slab_size=2, slab_overlap=1, progress=False)
    assert len(slab.info["slabs"]) == 3
    present = whole.present()
    cos = np.abs(np.einsum("vkd,vkd->vk", whole.directions, slab.directions))[present]
    assert np.degrees(np.arccos(np.clip(cos, 0, 1))).max() < 1.0
    np.testing.assert_allclose(slab.fractions, whole.fractions, atol=0.02)


def _angles_between_fibres(fit) -> np.ndarray:
    """(V, K, K) angle in degrees between the fibres of each voxel that carry a fraction."""
    d = fit.directions
    cos = np.clip(np.abs(np.einsum("vkd,vmd->vkm", d, d)), 0, 1)
    ang = np.degrees(np.arccos(cos))
    both = (fit.fibre_fractions[:, :, None] > 0) & (fit.fibre_fractions[:, None, :] > 0)
    k = d.shape[1]
    both &= ~np.eye(k, dtype=bool)[None]
    return np.where(both, ang, 180.0)


def test_stitched_volume_has_no_fibres_closer_than_the_merge_angle(caplog):
    """A 40-slice volume with the default slabs (30, overlap 5): the log line's overlap is the
    geometry's, and no voxel keeps two fibres within the merge angle after stitching."""
    import inspect
    import logging

    from prismflow.phantoms.crossing import make_crossing_phantom

    merge_deg = inspect.signature(merge_parallel).parameters["max_angle_deg"].default
    shape = (4, 3, 40)
    n = int(np.prod(shape))
    ph = make_crossing_phantom(snr=20, n_per_angle=n // 4, n_single=n - 3 * (n // 4), seed=2,
                               angles_deg=(20, 45, 90), n_dirs=20, n_b0=3)
    dwi = ph.signal[:n].reshape(shape + (-1,)).astype(np.float32)
    cfg = PrismConfig.for_volume(n_iter=6, seed=4)
    with caplog.at_level(logging.INFO, logger="prismflow.prism.volume"):
        fit = fit_volume(dwi, ph.acquisition, None, cfg, workers=1, progress=False, mem_gb=50.0)
    starts = [(s["start"], s["stop"]) for s in fit.info["slabs"]]
    assert starts == [(0, 23), (18, 40)]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("plan:"))
    assert "overlap 5" in line and fit.info["slab_overlap"] == 5
    assert starts[0][1] - starts[1][0] == 5
    assert _angles_between_fibres(fit).min() >= merge_deg


def test_stitching_merges_fibres_that_the_blend_brought_together():
    """Two slabs that disagree slightly on a voxel's second fibre: the blend lands the two
    fibres 2° apart; stitching must report one fibre holding both fractions."""
    from prismflow.prism.result import PrismFit
    from prismflow.prism.slabs import Slab, stitch_slabs

    mask = np.ones((1, 1, 3), bool)
    slabs = [Slab(0, 0, 2), Slab(1, 1, 3)]

    def part(second):
        d = np.array([[[1.0, 0, 0], second, [0, 0, 1.0]]] * 2)
        return PrismFit(mask=np.ones((1, 1, 2), bool), s0=np.ones(2),
                        fractions=np.tile([0.1, 0.1, 0.0, 0.4, 0.4, 0.0], (2, 1)),
                        directions=d / np.linalg.norm(d, axis=-1, keepdims=True),
                        f_in=np.full((2, 3), 0.5), predicted=np.ones((2, 4), np.float32),
                        bias=np.ones(2), meas_scale=np.zeros((1, 4)), meas_offset=np.zeros((1, 4)),
                        sigma=np.array([np.nan]), residual_rms=np.zeros(2),
                        config={"min_fibre_fraction": 0.1, "relative_fibre_fraction": 0.15},
                        info={"iterations": 1, "final_loss": 0.0, "seconds": 0.0, "voxels": 2})

    c, s_ = np.cos(np.radians(2.0)), np.sin(np.radians(2.0))
    fit = stitch_slabs([part([c, s_, 0.0]), part([c, -s_, 0.0])], slabs, mask)
    # the overlap voxel (z = 1) blends to fibres 0° and 0°: one fibre of fraction 0.8
    assert fit.fibre_fractions[1, 0] == pytest.approx(0.8)
    assert fit.present()[1].sum() == 1
    assert _angles_between_fibres(fit).min() >= 5.0
