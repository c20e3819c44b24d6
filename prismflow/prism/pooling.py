"""The evidence test pooled over neighbours that see the same fibres.

The per-voxel test (``prism/selection.py``) compares, for each voxel, the criterion of the
fibre counts on its elimination path. A narrow crossing runs through many voxels, and in each
the gain of two fibres over one can fall just short of the price, although every neighbour
inside the crossing shows the same two directions. Pooling uses that: the criterion difference
of k against k' fibres at voxel v is averaged over v and those of its 26 neighbours whose own
k- and k'-fibre candidates (the fits on their paths, kept or not) have the same fibre
directions within ``max_angle_deg`` (a one-to-one match of all fibres):

    d_v(k, k') = mean_{u ∈ G_v(k, k')} [score_u(k) − score_u(k')],

with score the per-voxel criterion of ``select_fibres`` (SSE + price); the count that wins
every pooled comparison is the pooled decision. This is spatially regularised model comparison
(cf. Penny et al., NeuroImage 2007, on spatial priors in Bayesian model comparison): the prices
are unchanged, the evidence is averaged over a neighbourhood that agrees on the configuration,
and where no neighbour agrees the decision is the voxel's own.

Pooling only *adds* fibres: a voxel keeps the larger of its own count and the pooled one. A
fibre is then reported where the voxel's own evidence or the agreeing neighbourhood's supports
it. Measured on the tuning geometries of ``benchmarks/connectivity.py`` (seeds 100–103), the
two-sided rule (pooled count replaces the voxel's) also removed resolved voxels inside crossings
where most neighbours fell short of the price (seed 101, 25°: merged 92 → 100 % of the overlap),
and its connectome error was higher on all four seeds (mean 0.228 two-sided, 0.223 one-sided,
0.245 without pooling); single-bundle voxels with a second fibre: 0.1–0.7 % (without pooling
0.0–0.4 %). Independent voxels (no spatial layout) are never pooled.

Axis letters: V voxels, K fibres, P neighbour pairs.
"""

from __future__ import annotations

import itertools

import numpy as np


def match_fixel_sets(a: np.ndarray, b: np.ndarray, k: int, max_angle_deg: float) -> np.ndarray:
    """(P,) bool: the k fibres of ``a`` and ``b`` (P, k, 3 unit vectors) pair one-to-one within
    ``max_angle_deg`` (axes: the sign of a direction does not matter)."""
    cos_thr = np.cos(np.deg2rad(max_angle_deg))
    c = np.abs(np.einsum("pid,pjd->pij", a[:, :k], b[:, :k]))         # (P, k, k)
    ok = np.zeros(a.shape[0], dtype=bool)
    for perm in itertools.permutations(range(k)):
        ok |= np.all(c[:, np.arange(k), list(perm)] >= cos_thr, axis=1)
    return ok


def pooled_counts(path_score: np.ndarray, path_dirs: np.ndarray, pairs: np.ndarray,
                  max_angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's fibre count after pooling the evidence over agreeing neighbours: the larger
    of its own decision and the pooled one.

    Counts are compared in pairs, k against k' < k, with the criterion difference averaged
    over the voxel and the neighbours whose k-fibre *and* k'-fibre candidates agree with the
    voxel's (any one-fibre candidate counts as agreeing: the question is whether the extra
    fibres are shared). The count that wins every comparison is the pooled decision (a voxel
    without such a count has its own). Comparing over one common group per pair keeps a voxel's
    three-fibre evidence (seen by few neighbours) from being set against its neighbours'
    richer two-fibre evidence.

    path_score : (V, K+1) criterion of count k on the voxel's path (index k; +inf where the
        path does not reach k; column 0 unused).
    path_dirs : (V, K+1, K, 3) the present fibres' unit directions of each count's candidate,
        the first k rows filled (zeros elsewhere).
    pairs : (P, 2) neighbour pairs (indices into V).
    Returns (counts (V,), the pooled group size of the chosen count's comparison against one
    fibre (V,); 1 = decided alone).
    """
    v, kp1 = path_score.shape
    finite = np.isfinite(path_score)
    own = np.argmin(np.where(finite, path_score, np.inf), axis=1)      # column 0 is +inf
    i, j = (pairs[:, 0], pairs[:, 1]) if pairs.size else (np.zeros(0, int), np.zeros(0, int))
    agree = {1: finite[i, 1] & finite[j, 1]}
    for k in range(2, kp1):
        both = finite[i, k] & finite[j, k]
        a = np.zeros(i.shape[0], dtype=bool)
        a[both] = match_fixel_sets(path_dirs[i[both], k], path_dirs[j[both], k], k, max_angle_deg)
        agree[k] = a
    # wins[v, k, k'] for k > k': the pooled criterion difference favours k over k'
    beats = np.zeros((v, kp1, kp1), dtype=bool)
    size = np.ones((v, kp1))
    for k in range(2, kp1):
        for k2 in range(1, k):
            has = finite[:, k] & finite[:, k2]
            with np.errstate(invalid="ignore"):
                diff = np.where(has, path_score[:, k] - path_score[:, k2], 0.0)
            total, count = diff.copy(), has.astype(float)
            sel = agree[k] & agree[k2]
            ia, ja = i[sel], j[sel]
            np.add.at(total, ia, diff[ja])
            np.add.at(total, ja, diff[ia])
            np.add.at(count, ia, 1.0)
            np.add.at(count, ja, 1.0)
            favour_k = has & (total < 0)
            beats[:, k, k2] = favour_k
            beats[:, k2, k] = has & ~favour_k
            if k2 == 1:
                size[:, k] = np.maximum(count, 1.0)
    pooled = own.copy()
    for k in range(1, kp1):
        others = [k2 for k2 in range(1, kp1) if k2 != k]
        wins_all = finite[:, k] & np.all([beats[:, k, k2] | ~finite[:, k2] for k2 in others], axis=0)
        pooled = np.where(wins_all, k, pooled)
    counts = np.maximum(own, pooled)          # pooling only adds fibres (module docstring)
    return counts, size[np.arange(v), counts]
