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


def _tangents_at(points: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (voxels) from each of ``where`` (V, 3) to a centre line ``points`` (P, 3), and
    the unit tangent of the line at the nearest point (V, 3)."""
    from scipy.spatial import cKDTree

    t = np.gradient(points, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    dist, idx = cKDTree(points).query(where)
    return dist, t[idx]


def crossing_fixels(phantom, directions: np.ndarray, amplitudes: np.ndarray, *,
                    margin: float = 0.3, off_deg: float = 10.0) -> list[dict]:
    """How a fibre source's fixels sit in the overlaps of the phantom's designed crossings.

    phantom : a :class:`~prismflow.phantoms.connectivity.ConnectivityPhantom`.
    directions : (X, Y, Z, K, 3) fixel directions in its voxel frame; amplitudes : (X, Y, Z, K)
        (a fixel is reported where > 0).
    margin : an overlap voxel's centre lies deeper than this (voxels) inside both tubes.

    Per crossing pair (A, B), over its overlap voxels and both bundles: for each bundle the
    reported fixel best aligned with its tangent is its match. Returns one dict per pair:
    ``angle_deg``; ``n_voxels``; ``merged`` — share of voxels where one fixel is both
    bundles' match (or none is reported); ``resolved`` — share where distinct fixels match
    both within ``off_deg``; ``off`` — share of matches more than ``off_deg`` off;
    ``toward_partner_deg`` — median signed tilt of a match towards the partner bundle, in the
    plane of the two tangents (+ = towards the partner; a merged fixel on the bisector gives
    + half the crossing angle); ``toward_partner_resolved_deg`` — the same over voxels with
    distinct matches only; ``three_fibre`` — share of overlap voxels with a third true fixel
    of fraction ≥ 0.15 (another bundle passing through the crossing).
    """
    vox = np.argwhere(phantom.mask)
    dirs = np.asarray(directions, np.float64)[phantom.mask]
    amps = np.asarray(amplitudes, np.float64)[phantom.mask]
    crossing = [i for i, b in enumerate(phantom.bundles) if b.kind == "crossing"]
    out = []
    for i, j in zip(crossing[0::2], crossing[1::2]):
        a, b = phantom.bundles[i], phantom.bundles[j]
        da, ta = _tangents_at(a.points, vox)
        db, tb = _tangents_at(b.points, vox)
        sel = (da < a.radius - margin) & (db < b.radius - margin)
        if not sel.any():
            continue
        d, f = dirs[sel], amps[sel]
        matches, tilts, devs = [], [], []
        for t_self, t_other in ((ta[sel], tb[sel]), (tb[sel], ta[sel])):
            t_other = t_other * np.sign((t_self * t_other).sum(1))[:, None]
            perp = t_other - (t_other * t_self).sum(1)[:, None] * t_self
            perp /= np.linalg.norm(perp, axis=1, keepdims=True)
            c = np.where(f > 0, np.abs(np.einsum("vkd,vd->vk", d, t_self)), -1.0)
            k = c.argmax(1)
            m = d[np.arange(len(k)), k]
            m = m * np.sign((m * t_self).sum(1))[:, None]
            tilts.append(np.degrees(np.arcsin(np.clip((m * perp).sum(1), -1, 1))))
            devs.append(np.degrees(np.arccos(np.clip((m * t_self).sum(1), -1, 1))))
            matches.append(np.where(c.max(1) >= 0, k, -1))
        merged = (matches[0] == matches[1]) | (matches[0] < 0)
        resolved = ~merged & (devs[0] < off_deg) & (devs[1] < off_deg)
        tilt, dev = np.concatenate(tilts), np.concatenate(devs)
        distinct = np.concatenate([~merged, ~merged])
        third = (np.asarray(phantom.fixel_fractions)[phantom.mask][sel] >= 0.15).sum(1) >= 3
        out.append(dict(angle_deg=float(a.angle_deg), n_voxels=int(sel.sum()),
                        merged=float(merged.mean()), resolved=float(resolved.mean()),
                        off=float(np.mean(dev > off_deg)),
                        toward_partner_deg=float(np.median(tilt)),
                        toward_partner_resolved_deg=(float(np.median(tilt[distinct]))
                                                     if distinct.any() else float("nan")),
                        three_fibre=float(third.mean())))
    return out
