"""Deterministic tractography on any peaks source (PRISM, CSD, MSMT, …) with dipy's EuDX.

The peaks of any method are handed to dipy as a ``PeaksAndMetrics`` whose sphere is made of the
peak directions themselves, so no direction is rounded to a fixed sphere's vertices.

Axis letters: X/Y/Z space, K peaks. Lengths in mm, angles in degrees. Peak directions are in the
voxel (bvec) frame; streamline points come back in world (RAS) mm via ``affine``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingConfig:
    """Settings of the deterministic tracker.

    Parameters
    ----------
    step_mm : step size in mm.
    angle_deg : largest turn between steps, degrees.
    seeds_per_voxel : seeds per voxel of the seed mask (uniform random positions from the seed).
    min_length_mm, max_length_mm : streamlines outside this range are dropped.
    peak_threshold : peaks with amplitude below this fraction of the voxel's largest are ignored.
    """

    step_mm: float = 0.5
    angle_deg: float = 45.0
    seeds_per_voxel: int = 1
    min_length_mm: float = 4.0
    max_length_mm: float = 250.0
    peak_threshold: float = 0.1

    def __post_init__(self):
        if self.step_mm <= 0 or not 0 < self.angle_deg <= 90:
            raise ValueError("step_mm must be > 0 and angle_deg in (0, 90]")
        if self.seeds_per_voxel < 1 or self.min_length_mm > self.max_length_mm:
            raise ValueError("seeds_per_voxel must be >= 1 and min_length_mm <= max_length_mm")

    def to_dict(self) -> dict:
        return asdict(self)


def _peaks_and_metrics(directions: np.ndarray, amplitudes: np.ndarray, threshold: float):
    """A dipy ``PeaksAndMetrics`` whose sphere vertices are the (unique) peak directions."""
    from dipy.core.sphere import Sphere
    from dipy.direction.peaks import PeaksAndMetrics

    shape = directions.shape[:3]
    K = directions.shape[3]
    amp = np.where(np.isfinite(amplitudes), amplitudes, 0.0).astype(np.float64)
    vmax = amp.max(axis=-1, keepdims=True)
    keep = (amp > 0) & (amp >= threshold * np.where(vmax > 0, vmax, 1.0))
    norms = np.linalg.norm(directions, axis=-1)
    keep &= norms > 1e-6
    flat_dirs = directions[keep] / norms[keep][:, None]
    # vertex 0 is a dummy for "no peak"
    verts = np.concatenate([[[1.0, 0.0, 0.0]], flat_dirs], axis=0)
    indices = np.full(shape + (K,), -1, dtype=np.int32)
    indices[keep] = np.arange(1, len(verts), dtype=np.int32)
    values = np.where(keep, amp, 0.0)
    # EuDX expects peaks sorted by value and -1 after the last one
    order = np.argsort(-values, axis=-1, kind="stable")
    values = np.take_along_axis(values, order, axis=-1)
    indices = np.take_along_axis(indices, order, axis=-1)
    pam = PeaksAndMetrics()
    pam.sphere = Sphere(xyz=verts)
    pam.peak_indices = indices
    pam.peak_values = values
    pam.peak_dirs = np.where(indices[..., None] >= 0, verts[np.maximum(indices, 0)], 0.0)
    pam.ang_thr = 60.0
    pam.qa_thr = 0.0
    pam.total_weight = 0.5
    return pam


def track_peaks(directions: np.ndarray, amplitudes: np.ndarray, mask: np.ndarray,
                affine: np.ndarray, cfg: TrackingConfig = TrackingConfig(), *,
                seed_mask: np.ndarray | None = None, seed: int = 0):
    """Deterministic (EuDX) streamlines following the peaks.

    Parameters
    ----------
    directions : (X, Y, Z, K, 3) — unit peak directions in the voxel frame (zero = no peak).
    amplitudes : (X, Y, Z, K) — peak amplitudes or fibre fractions (0 = no peak).
    mask : (X, Y, Z) bool — tracking stops outside it.
    affine : (4, 4) voxel-to-world (mm).
    seed_mask : (X, Y, Z) bool — where to seed; default: voxels with at least one peak.
    seed : seeds the seed positions (uniform inside each seed voxel) and dipy's tracker; every
        value, 0 included, gives its own reproducible set.

    Returns
    -------
    list of (P, 3) float32 arrays — streamline points in world mm.
    """
    from dipy.tracking.local_tracking import LocalTracking
    from dipy.tracking.stopping_criterion import BinaryStoppingCriterion
    from dipy.tracking.streamline import Streamlines
    from dipy.tracking.utils import length

    start = time.perf_counter()
    mask = np.asarray(mask, bool)
    pam = _peaks_and_metrics(np.asarray(directions, np.float64), np.asarray(amplitudes),
                             cfg.peak_threshold)
    pam.ang_thr = float(cfg.angle_deg)
    if seed_mask is None:
        seed_mask = mask & (pam.peak_values[..., 0] > 0)
    # seed points drawn uniformly inside each seed voxel from ``seed``: with deterministic
    # peaks and fixed grid seeds the seed would change nothing (seeds 0 and 1 were identical)
    from .fixels import random_seeds

    vox = random_seeds(np.asarray(seed_mask, bool), cfg.seeds_per_voxel, seed)
    seeds = vox @ np.asarray(affine, np.float64)[:3, :3].T + np.asarray(affine, np.float64)[:3, 3]
    if len(seeds) == 0:
        logger.warning("no seeds: the peaks source found no peaks inside the mask")
        return []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        gen = LocalTracking(pam, BinaryStoppingCriterion(mask.astype(np.uint8)), seeds, affine,
                            step_size=cfg.step_mm, max_cross=1,
                            maxlen=int(cfg.max_length_mm / cfg.step_mm),
                            random_seed=int(seed), return_all=True)
        sl = Streamlines(gen)
    lengths = np.asarray(list(length(sl))) if len(sl) else np.zeros(0)
    keep = (lengths >= cfg.min_length_mm) & (lengths <= cfg.max_length_mm)
    out = [np.asarray(s, np.float32) for s, k in zip(sl, keep) if k]
    logger.info("tracked %d streamlines (%d seeds) in %.1f s", len(out), len(seeds),
                time.perf_counter() - start)
    return out


def save_trk(streamlines, reference_img, path) -> None:
    """Write ``streamlines`` (world mm) as a TrackVis ``.trk`` file in ``reference_img``'s space."""
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    sft = StatefulTractogram(list(streamlines), reference_img, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)


def load_trk(path, reference="same"):
    """Read a ``.trk`` file; returns a list of (P, 3) arrays in world mm."""
    from dipy.io.streamline import load_tractogram

    sft = load_tractogram(str(path), reference, bbox_valid_check=False)
    sft.to_rasmm()
    return list(sft.streamlines)
