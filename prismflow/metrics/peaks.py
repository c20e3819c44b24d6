"""Scoring predicted fibre peaks against ground truth.

Conventions (stated in every report): angles are antipodally symmetric (a fibre and its
negation are the same); the **best-match error** of a voxel is the mean over its true fibres of
the angle to the closest predicted fibre; **recall/precision** count one-to-one matches
(optimal assignment) within ``tolerance_deg``; the **single-fibre false-positive rate** is the
share of one-fibre voxels with more than one predicted fibre. A voxel with no predicted fibre
gets 90° per true fibre.

Axis letters: V voxels, K predicted fibres, T true fibres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def pairwise_angles(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(V, T, K) antipodally symmetric angles in degrees between true and predicted fibres."""
    pn = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
    tn = true / np.maximum(np.linalg.norm(true, axis=-1, keepdims=True), 1e-12)
    cos = np.abs(np.einsum("vtd,vkd->vtk", tn, pn))
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


@dataclass
class PeakScores:
    """Per-voxel and summary scores.

    best_match_deg : (V,) per-voxel best-match error. matched : (V,) true fibres matched within
    tolerance (one-to-one). n_pred : (V,) predicted fibres. n_true : (V,).
    """

    best_match_deg: np.ndarray
    matched: np.ndarray
    n_pred: np.ndarray
    n_true: np.ndarray
    tolerance_deg: float

    @property
    def recall(self) -> float:
        return float(self.matched.sum() / max(self.n_true.sum(), 1))

    @property
    def precision(self) -> float:
        return float(self.matched.sum() / max(self.n_pred.sum(), 1))

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def overall_deg(self) -> float:
        """Mean best-match error over all voxels (single-fibre and crossing)."""
        return float(np.mean(self.best_match_deg))

    def single_fibre_fp_rate(self) -> float:
        single = self.n_true == 1
        return float(np.mean(self.n_pred[single] > 1)) if single.any() else float("nan")

    def by_group(self, groups: np.ndarray) -> dict:
        """Mean best-match error per group label (e.g. crossing angle)."""
        return {g: float(np.mean(self.best_match_deg[groups == g])) for g in np.unique(groups)}


def score_peaks(pred_dirs: np.ndarray, pred_present: np.ndarray, true_dirs: np.ndarray,
                n_true: np.ndarray, *, tolerance_deg: float = 20.0) -> PeakScores:
    """Score predictions (V, K, 3) with presence mask (V, K) against truth (V, T, 3), n_true (V,)."""
    pred_dirs = np.asarray(pred_dirs, dtype=np.float64)
    present = np.asarray(pred_present, dtype=bool) & (np.linalg.norm(pred_dirs, axis=-1) > 0)
    ang = pairwise_angles(pred_dirs, np.asarray(true_dirs, dtype=np.float64))
    v, t, _ = ang.shape
    true_valid = np.arange(t)[None, :] < np.asarray(n_true)[:, None]
    masked = np.where(present[:, None, :], ang, np.inf)
    closest = np.min(masked, axis=2) if masked.shape[2] else np.full((v, t), np.inf)
    closest = np.where(np.isfinite(closest), closest, 90.0)
    best = np.where(true_valid, closest, 0.0).sum(1) / np.maximum(true_valid.sum(1), 1)
    matched = np.zeros(v, dtype=np.int64)
    for i in range(v):
        a = ang[i][true_valid[i]][:, present[i]]
        if a.size == 0:
            continue
        cost = np.where(a <= tolerance_deg, a - 1e3, 0.0)
        r, c = linear_sum_assignment(cost)
        matched[i] = int(np.sum(a[r, c] <= tolerance_deg))
    return PeakScores(best_match_deg=best, matched=matched, n_pred=present.sum(1),
                      n_true=np.asarray(n_true), tolerance_deg=tolerance_deg)
