"""Scoring a tractogram against a known connectome (Tractometer-style and weighted).

Conventions: a streamline is **valid** when its two end labels are an ROI pair joined by a true
bundle, **invalid** when both ends are labelled but the pair is not a true one (same-ROI loops
included), **no connection** when an end reaches no label. A **valid bundle** is a true pair
reached by at least ``min_streamlines`` streamlines; an **invalid bundle** a false pair reached
by at least that many. The **weighted connectome error** is ½ Σ_{i<j} |C/ΣC − W/ΣW| over ROI
pairs with C the estimate (streamlines weighted by 1/length) and W the truth: 0 = perfect,
1 = disjoint. Pearson r is taken over the upper triangle (i < j).

Axis letters: S streamlines, L ROIs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..tracking.connectome import end_labels


@dataclass
class ConnectivityScores:
    """Shares are fractions of all streamlines (0–1); bundles are counts."""

    n_streamlines: int
    valid: float
    invalid: float
    no_connection: float
    valid_bundles: int
    invalid_bundles: int
    n_true_bundles: int
    weighted_error: float
    pearson_r: float

    def to_dict(self) -> dict:
        return asdict(self)


def streamline_lengths(streamlines) -> np.ndarray:
    """(S,) lengths in mm."""
    return np.array([float(np.linalg.norm(np.diff(np.asarray(s), axis=0), axis=1).sum())
                     for s in streamlines])


def weighted_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """½ Σ_{i<j} |C/ΣC − W/ΣW| over the upper triangle; 1 when the estimate is empty."""
    iu = np.triu_indices_from(truth, k=1)
    c, w = np.asarray(estimate, float)[iu], np.asarray(truth, float)[iu]
    if c.sum() <= 0:
        return 1.0
    return float(0.5 * np.abs(c / c.sum() - w / w.sum()).sum())


def pearson_upper(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Pearson r over the upper triangle (NaN when the estimate is constant)."""
    iu = np.triu_indices_from(truth, k=1)
    c, w = np.asarray(estimate, float)[iu], np.asarray(truth, float)[iu]
    if c.std() == 0 or w.std() == 0:
        return float("nan")
    return float(np.corrcoef(c, w)[0, 1])


def score_connectivity(streamlines, labels: np.ndarray, affine: np.ndarray,
                       true_weights: np.ndarray, *, search_mm: float = 2.0,
                       min_streamlines: int = 1) -> tuple[ConnectivityScores, np.ndarray]:
    """Score ``streamlines`` (world mm) against ``true_weights`` (L, L) for ROI labels 1..L.

    Returns the scores and the (L, L) 1/length-weighted estimated connectome.
    """
    n_roi = true_weights.shape[0]
    ends = end_labels(streamlines, labels, affine, search_mm=search_mm)
    lengths = streamline_lengths(streamlines)
    est = np.zeros((n_roi, n_roi))
    counts = np.zeros((n_roi, n_roi), np.int64)
    true = np.asarray(true_weights) > 0
    n_valid = n_invalid = n_none = 0
    for (a, b), length in zip(ends, lengths):
        if a <= 0 or b <= 0:
            n_none += 1
            continue
        i, j = a - 1, b - 1
        counts[i, j] += 1
        if i != j:
            counts[j, i] += 1
            est[i, j] += 1.0 / max(length, 1e-6)
            est[j, i] = est[i, j]
        if i != j and true[i, j]:
            n_valid += 1
        else:
            n_invalid += 1
    iu = np.triu_indices(n_roi, k=0)
    reached = counts[iu] >= min_streamlines
    is_true = true[iu]
    s = max(len(streamlines), 1)
    scores = ConnectivityScores(
        n_streamlines=len(streamlines), valid=n_valid / s, invalid=n_invalid / s,
        no_connection=n_none / s, valid_bundles=int((reached & is_true).sum()),
        invalid_bundles=int((reached & ~is_true).sum()), n_true_bundles=int(is_true.sum()),
        weighted_error=weighted_error(est, true_weights),
        pearson_r=pearson_upper(est, true_weights))
    return scores, est
