"""From fitted parameters to fixels: ordering, sign convention, presence, peaks images.

Axis letters: V voxels, K fibres.
"""

from __future__ import annotations

import numpy as np


def sort_fibres(directions: np.ndarray, fibre_fractions: np.ndarray, *others: np.ndarray):
    """Sort fibres by descending fraction and put each direction in the z ≥ 0 hemisphere.

    directions : (V, K, 3); fibre_fractions : (V, K); others : (V, K, ...) arrays sorted alike.
    Returns the sorted (directions, fibre_fractions, *others).
    """
    order = np.argsort(-fibre_fractions, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)  # noqa: E731
    d = take(directions).copy()
    flip = d[..., 2] < 0
    d[flip] *= -1
    return (d, take(fibre_fractions), *[take(o) for o in others])


def merge_parallel(directions: np.ndarray, fibre_fractions: np.ndarray, f_in: np.ndarray, *,
                   max_angle_deg: float = 5.0):
    """Merge fibres closer than ``max_angle_deg``: one fibre split into two parallel halves
    produces exactly the same signal, so such pairs are one fixel.

    The merged fibre takes the summed fraction, the fraction-weighted mean direction and f_in;
    the other is emptied (fraction 0). Returns new (directions, fibre_fractions, f_in).
    """
    d, f, fin = directions.copy(), fibre_fractions.copy(), f_in.copy()
    k = d.shape[1]
    cos_thr = np.cos(np.deg2rad(max_angle_deg))
    for a in range(k):
        for b in range(a + 1, k):
            cos = np.einsum("vd,vd->v", d[:, a], d[:, b])
            hit = (np.abs(cos) >= cos_thr) & (f[:, b] > 0)
            if not hit.any():
                continue
            sign = np.where(cos[hit] < 0, -1.0, 1.0)[:, None]
            fa, fb = f[hit, a][:, None], f[hit, b][:, None]
            tot = np.maximum(fa + fb, 1e-12)
            merged = fa * d[hit, a] + fb * sign * d[hit, b]
            d[hit, a] = merged / np.maximum(np.linalg.norm(merged, axis=1, keepdims=True), 1e-12)
            fin[hit, a] = ((fa * fin[hit, a][:, None] + fb * fin[hit, b][:, None]) / tot)[:, 0]
            f[hit, a] = tot[:, 0]
            f[hit, b] = 0.0
    return d, f, fin


def fibre_present(fibre_fractions: np.ndarray, *, min_fraction: float,
                  relative_fraction: float) -> np.ndarray:
    """(V, K) bool: fraction ≥ ``min_fraction`` and ≥ ``relative_fraction`` × the largest."""
    f = np.asarray(fibre_fractions)
    largest = f.max(axis=1, keepdims=True) if f.shape[1] else np.zeros((f.shape[0], 1))
    return (f >= min_fraction) & (f >= relative_fraction * largest)


def peaks_array(directions: np.ndarray, fibre_fractions: np.ndarray,
                present: np.ndarray) -> np.ndarray:
    """MRtrix3-style peaks, (V, 3K): direction × fraction, zero where a fibre is absent."""
    scaled = directions * (fibre_fractions * present)[..., None]
    return scaled.reshape(scaled.shape[0], -1)


def bvec_frame_to_world(directions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (..., 3) directions from the FSL bvec frame to scanner (world) coordinates, as MRtrix3
    stores peaks (:func:`prismflow.io.peaks.bvec_to_scanner`, the one implementation)."""
    from ..io.peaks import bvec_to_scanner

    return bvec_to_scanner(directions, affine)
