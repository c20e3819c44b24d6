"""Whole-volume fitting in overlapping slabs, stitched back with fibre matching.

A volume (X, Y, Z, N) is cut along one axis into slabs of ``slab_size`` slices overlapping by
``overlap`` slices; each slab is fitted on its own (its own calibration), then slabs are
blended with linear ramps across each overlap. Fibres are unordered and sign-free, so in an
overlap the fibres of the incoming slab are first permuted and sign-flipped to match the
fibres already stitched, voxel by voxel, before their directions are averaged.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from ..io.errors import InputError
from ..io.gradients import Acquisition
from .config import PrismConfig
from .fixels import sort_fibres
from .fit import estimate_noise_sigma
from .result import PrismFit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slab:
    """Slices [start, stop) along ``axis``; ``index`` is the slab's position in the plan."""

    index: int
    start: int
    stop: int
    axis: int = 2

    def slicer(self, ndim: int = 3) -> tuple:
        s = [slice(None)] * ndim
        s[self.axis] = slice(self.start, self.stop)
        return tuple(s)

    def weights(self, first: bool, last: bool, overlap: int) -> np.ndarray:
        """(stop − start,) blend weights: linear ramps over the overlaps with neighbours."""
        n = self.stop - self.start
        pos = np.arange(n, dtype=np.float64)
        w = np.ones(n)
        if overlap > 0:
            if not first:
                w = np.minimum(w, (pos + 1) / (overlap + 1))
            if not last:
                w = np.minimum(w, (n - pos) / (overlap + 1))
        return w


def plan_slabs(n_slices: int, *, slab_size: int = 30, overlap: int = 5, axis: int = 2) -> list[Slab]:
    """Cover ``n_slices`` with slabs of at most ``slab_size`` slices overlapping by ``overlap``."""
    if slab_size < 1:
        raise InputError(f"slab size must be >= 1 slice, got {slab_size}")
    if not 0 <= overlap < slab_size:
        raise InputError(f"slab overlap must be in [0, slab size); got {overlap} with size {slab_size}")
    if slab_size >= n_slices:
        return [Slab(0, 0, n_slices, axis)]
    step = slab_size - overlap
    n = math.ceil((n_slices - slab_size) / step) + 1
    starts = [min(i * step, n_slices - slab_size) for i in range(n)]
    return [Slab(i, s, s + slab_size, axis) for i, s in enumerate(starts)]


#: Memory of a slab worker that does not grow with its voxels (torch, imports, allocator), GiB.
WORKER_OVERHEAD_GIB = 0.6


def bytes_per_voxel(n_meas: int, n_fibres: int) -> int:
    """Peak bytes one voxel adds to a slab fit (CPU), from measured peak RSS.

    Calibrated on the brain phantom (N = 288, K = 3, paper defaults): peak RSS of a worker
    grew by 12.96 kB per voxel (20k → 160k voxels), ≈ 45 bytes per measurement — the float64
    copies of the data and of the prediction that the fit keeps (the fused kernel itself works
    in fixed-size chunks). The model rounds that up: 46 B·N + 200 B·K + 1 kB.
    """
    return 46 * n_meas + 200 * n_fibres + 1024


def stitch_gib(n_voxels: int, n_meas: int, n_fibres: int, *, slab_size: int = 30,
               overlap: int = 5) -> float:
    """Memory of stitching in the calling process, GiB: the slab results (float32 predictions,
    counted once per overlapping slab) and the blended float32 prediction and maps."""
    redundancy = 1.0 + overlap / max(1, slab_size - overlap)
    per_voxel = 4 * n_meas * (1 + redundancy) + 8 * (12 * n_fibres + 16) * (1 + redundancy)
    return n_voxels * per_voxel / 2**30


def slab_size_for_memory(mask: np.ndarray, n_meas: int, n_fibres: int, mem_gb: float, *,
                         axis: int = 2, overlap: int = 5) -> int:
    """The thickest slab (slices) whose worst-case voxel count fits in ``mem_gb`` GiB.

    ``mem_gb`` is what one worker may spend on its voxels (:func:`fit_volume` takes the
    worker's fixed :data:`WORKER_OVERHEAD_GIB` off its budget first).
    """
    per_slice = np.asarray(mask, dtype=bool).sum(axis=tuple(d for d in range(3) if d != axis))
    budget = mem_gb * 2**30 / bytes_per_voxel(n_meas, n_fibres)
    n = mask.shape[axis]
    best = overlap + 1
    for size in range(overlap + 1, n + 1):
        window = np.convolve(per_slice, np.ones(size), mode="valid").max()
        if window > budget:
            break
        best = size
    return best


def slab_job(dwi: np.ndarray, mask: np.ndarray, slab: Slab, *, overlap: int = 5,
             noise_sigma: float | None = None):
    """The :class:`~prismflow.prism.parallel.SlabJob` of one slab (None when it has no voxel).

    Only the slab's voxels are read from ``dwi`` (a memory map works), as float32.
    """
    from .parallel import SlabJob

    sub_mask = np.asarray(mask, dtype=bool)[slab.slicer()]
    if not sub_mask.any():
        return None
    # identity of each voxel in the whole volume, so the seeded start matches a whole fit
    coords = list(np.nonzero(sub_mask))
    coords[slab.axis] = coords[slab.axis] + slab.start
    flat_global = np.ravel_multi_index(tuple(coords), mask.shape)
    data = np.asarray(dwi[slab.slicer(4)])[sub_mask].astype(np.float32, copy=False)
    return SlabJob(slab.index, data, sub_mask, flat_global, slab.axis, overlap, noise_sigma,
                   f"slab {slab.index} [{slab.start}:{slab.stop})")


def fit_slab(dwi: np.ndarray, acq: Acquisition, mask: np.ndarray, slab: Slab,
             cfg: PrismConfig, *, noise_sigma: float | None = None,
             progress: bool = True, warm_start: str | None = None,
             overlap: int = 5) -> PrismFit | None:
    """Fit one slab of a (X, Y, Z, N) volume; None when the slab has no mask voxel.

    On a CUDA out-of-memory error the slab is split in two (overlapping by ``overlap`` slices)
    and retried, with one log line. ``warm_start``: see :func:`fit_volume`.
    """
    from .parallel import fit_job

    job = slab_job(dwi, mask, slab, overlap=overlap, noise_sigma=noise_sigma)
    if job is None:
        return None
    return fit_job(job, acq, cfg, progress=progress, warm_start=warm_start)


def _best_permutation(ref: np.ndarray, ref_frac: np.ndarray, new: np.ndarray,
                      new_frac: np.ndarray) -> np.ndarray:
    """(V, K) permutation of ``new`` fibres that best matches ``ref``.

    A pairing scores |cos| × (f_ref f_new + 10⁻³ (f_ref + f_new)): pairing a strong fibre with
    an empty one (whose direction is arbitrary, possibly parallel) scores almost nothing, so
    strong fibres are matched to strong fibres.
    """
    k = ref.shape[1]
    perms = np.array(list(itertools.permutations(range(k))))            # (P, K)
    cos = np.abs(np.einsum("vkd,vmd->vkm", ref, new))                    # (V, K, K)
    score = np.stack([(cos[:, np.arange(k), p] * (ref_frac * new_frac[:, p]
                                                    + 1e-3 * (ref_frac + new_frac[:, p]))).sum(1)
                      for p in perms], 1)                                # (V, P)
    return perms[np.argmax(score, axis=1)]


def stitch_slabs(parts: list[PrismFit | None], slabs: list[Slab], mask: np.ndarray,
                 overlap: int) -> PrismFit:
    """Blend slab fits into one :class:`PrismFit` over ``mask`` (see module docstring)."""
    mask = np.asarray(mask, dtype=bool)
    nv = int(mask.sum())
    ids = np.full(mask.shape, -1, dtype=np.int64)
    ids[mask] = np.arange(nv)
    first = next((p for p in parts if p is not None), None)
    if first is None:
        raise InputError("the mask is empty: no voxel to fit")
    k, n = first.n_fibres, first.predicted.shape[1]
    acc = {"w": np.zeros(nv), "s0": np.zeros(nv), "fractions": np.zeros((nv, 3 + k)),
           "f_in": np.zeros((nv, k)), "predicted": np.zeros((nv, n), dtype=np.float32), "bias": np.zeros(nv),
           "residual_rms": np.zeros(nv), "dirs": np.zeros((nv, k, 3))}
    ref = np.zeros((nv, k, 3))
    ref_frac = np.zeros((nv, k))
    seen = np.zeros(nv, dtype=bool)
    used = [(p, s) for p, s in zip(parts, slabs) if p is not None]
    for p, s in used:
        w_axis = s.weights(s.index == slabs[0].index, s.index == slabs[-1].index, overlap)
        sub_ids = ids[s.slicer()][p.mask]
        coords = np.nonzero(p.mask)[s.axis]
        w = w_axis[coords]
        dirs, ffrac, fin = p.directions, p.fibre_fractions, p.f_in
        old = seen[sub_ids]
        if old.any():
            perm = _best_permutation(ref[sub_ids[old]], ref_frac[sub_ids[old]], dirs[old], ffrac[old])
            dirs, ffrac, fin = dirs.copy(), ffrac.copy(), fin.copy()
            dirs[old] = np.take_along_axis(dirs[old], perm[..., None], axis=1)
            ffrac[old] = np.take_along_axis(ffrac[old], perm, axis=1)
            fin[old] = np.take_along_axis(fin[old], perm, axis=1)
            sign = np.sign(np.einsum("vkd,vkd->vk", ref[sub_ids[old]], dirs[old]))
            dirs[old] *= np.where(sign == 0, 1, sign)[..., None]
        fresh = sub_ids[~old]
        ref[fresh] = dirs[~old]
        ref_frac[fresh] = ffrac[~old]
        seen[sub_ids] = True
        acc["w"][sub_ids] += w
        acc["s0"][sub_ids] += w * p.s0
        acc["fractions"][sub_ids, :3] += w[:, None] * p.fractions[:, :3]
        acc["fractions"][sub_ids, 3:] += w[:, None] * ffrac
        acc["f_in"][sub_ids] += w[:, None] * fin
        acc["predicted"][sub_ids] += w[:, None].astype(np.float32) * p.predicted
        acc["bias"][sub_ids] += w * p.bias
        acc["residual_rms"][sub_ids] += w * p.residual_rms
        acc["dirs"][sub_ids] += (w[:, None] * ffrac + 1e-12)[..., None] * dirs
    wsum = np.maximum(acc["w"], 1e-12)
    avg = lambda a: a / wsum.reshape((-1,) + (1,) * (a.ndim - 1))  # noqa: E731
    # the (V, N) prediction is blended in place, in float32 (a float64 average of a whole-brain
    # prediction alone would be 1.7 GB)
    predicted = acc.pop("predicted")
    predicted /= wsum.astype(np.float32)[:, None]
    dirs = acc["dirs"] / np.maximum(np.linalg.norm(acc["dirs"], axis=-1, keepdims=True), 1e-12)
    fractions = avg(acc["fractions"])
    dirs, ffrac, fin = sort_fibres(dirs, fractions[:, 3:], avg(acc["f_in"]))
    fractions[:, 3:] = ffrac
    info = {"slabs": [{"index": s.index, "start": s.start, "stop": s.stop, **{
        key: p.info[key] for key in ("iterations", "final_loss", "seconds", "voxels")}}
        for p, s in used]}
    info["seconds"] = float(sum(p.info["seconds"] for p, _ in used))
    info["iterations"] = int(max(p.info["iterations"] for p, _ in used))
    info["voxel_iterations"] = int(sum(p.info["voxels"] * p.info["iterations"] for p, _ in used))
    return PrismFit(
        mask=mask, s0=avg(acc["s0"]), fractions=fractions, directions=dirs, f_in=fin,
        predicted=predicted, bias=avg(acc["bias"]),
        meas_scale=np.concatenate([p.meas_scale for p, _ in used]),
        meas_offset=np.concatenate([p.meas_offset for p, _ in used]),
        sigma=np.concatenate([p.sigma for p, _ in used]),
        residual_rms=avg(acc["residual_rms"]), config=first.config, info=info)


def fit_volume(dwi: np.ndarray, acq: Acquisition, mask: np.ndarray | None, cfg: PrismConfig, *,
               slab_size: int | None = 30, overlap: int = 5, axis: int = 2,
               mem_gb: float | None = None, progress: bool = True, workers: int | None = None,
               warm_start: str | None = None) -> PrismFit:
    """Fit a (X, Y, Z, N) volume slab by slab and stitch the slabs.

    Parameters
    ----------
    slab_size : slices per slab (the paper: 30); None derives it from the memory budget alone.
    mem_gb : memory budget of the fit, GiB (default: half the free RAM, or 80 % of the free
        device memory on CUDA): the slab workers plus the stitched result (:func:`stitch_gib`);
        the input volume is the caller's (a memory map works). Slabs are made thinner than
        ``slab_size`` when a slab would not fit: per worker, the worst slab's voxels ×
        :func:`bytes_per_voxel` + :data:`WORKER_OVERHEAD_GIB` stays under its share.
    workers : CPU worker processes fitting slabs in parallel (default: cores, slabs and
        budget permitting; threads per worker = cores // workers). CUDA uses one.
    warm_start : None (random start, the paper) or a method of
        :func:`prismflow.prism.warmstart.warm_start_init` (e.g. ``"sd"``).
    """
    from .fit import resolve_device
    from .memory import default_budget_gib, peak_rss_gib
    from .parallel import plan_workers, run_jobs

    dwi = dwi if isinstance(dwi, np.ndarray) else np.asarray(dwi)
    if dwi.ndim != 4:
        raise InputError(f"dwi must be 4-D (X, Y, Z, N); got shape {dwi.shape}")
    if dwi.shape[3] != len(acq):
        raise InputError(f"the image has {dwi.shape[3]} volumes but the gradient table lists {len(acq)}")
    mask = np.ones(dwi.shape[:3], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != dwi.shape[:3]:
        raise InputError(f"mask shape {mask.shape} does not match the image {dwi.shape[:3]}")
    if not mask.any():
        raise InputError("the mask is empty: no voxel to fit")
    device = resolve_device(cfg.device)
    budget = float(mem_gb) if mem_gb is not None else default_budget_gib(device)
    n_meas, k = len(acq), cfg.n_fibres
    per_slice = mask.sum(axis=tuple(d for d in range(3) if d != axis))
    want = slab_size if slab_size is not None else mask.shape[axis]
    want = max(overlap + 1, min(int(want), mask.shape[axis]))
    # workers first, thick slabs second: a worker must at least hold a slab of 2·overlap + 2
    # slices; beyond that the budget goes into slab thickness (up to ``slab_size``)
    min_size = min(want, 2 * overlap + 2)
    worst = np.convolve(per_slice, np.ones(min_size), mode="valid").max()
    n_slabs_guess = len(plan_slabs(dwi.shape[axis], slab_size=want, overlap=overlap, axis=axis))
    # the stitched result lives in this process: take it off the budget before the workers
    stitch = stitch_gib(int(mask.sum()), n_meas, k, slab_size=want, overlap=overlap)
    fit_budget = max(budget - stitch, 0.25 * budget)
    n_workers, threads = plan_workers(n_slabs_guess, device, workers, fit_budget,
                                      worst * bytes_per_voxel(n_meas, k) / 2**30 + WORKER_OVERHEAD_GIB,
                                      n_voxels=int(mask.sum()))
    per_worker = fit_budget / n_workers
    usable = max(per_worker - WORKER_OVERHEAD_GIB, 0.25 * per_worker)
    cap = slab_size_for_memory(mask, n_meas, k, usable, axis=axis, overlap=overlap)
    if cap < want:
        log.info("memory budget %.2f GiB over %d worker(s): slabs of %d slices instead of %d",
                 budget, n_workers, cap, want)
    size = min(want, cap)
    slabs = plan_slabs(dwi.shape[axis], slab_size=size, overlap=overlap, axis=axis)
    n_workers = min(n_workers, len(slabs))
    log.info("fitting %d voxels in %d slab(s) of %d slices (overlap %d) on %s: %d worker(s) × %d "
             "thread(s), budget %.2f GiB", int(mask.sum()), len(slabs), size, overlap, device,
             n_workers, threads, budget)
    t0 = time.perf_counter()
    sigma = estimate_noise_sigma(_masked_sample(dwi, mask), acq, cfg.calibration.sigma_init)
    fits = run_jobs(lambda i: slab_job(dwi, mask, slabs[i], overlap=overlap, noise_sigma=sigma),
                    len(slabs), acq, cfg, workers=n_workers, threads=threads, device=device,
                    progress=progress, warm_start=warm_start)
    parts = [fits.get(i) for i in range(len(slabs))]
    fit = stitch_slabs(parts, slabs, mask, overlap)
    fit.info["wall_seconds"] = time.perf_counter() - t0
    fit.info["slab_size"], fit.info["slab_overlap"] = size, overlap
    fit.info.update(workers=n_workers, threads=threads, mem_gb=budget, device=str(device),
                    stitch_gib=stitch,
                    warm_start=warm_start,
                    worker_peak_rss_gib=max(p.info.get("peak_rss_gib", 0.0) for p in parts if p),
                    peak_rss_gib=peak_rss_gib(),
                    oom_splits=sum(p.info.get("oom_splits", 0) for p in parts if p))
    log.info("fitted %d voxels in %.1f s", int(mask.sum()), fit.info["wall_seconds"])
    return fit


def _masked_sample(dwi: np.ndarray, mask: np.ndarray, max_voxels: int = 50_000) -> np.ndarray:
    """(≤ max_voxels, N) evenly spaced brain voxels, read slab by slab (for the global σ).

    Reading the whole masked volume at once would hold a second copy of it in memory.
    """
    idx = np.flatnonzero(mask)
    step = max(1, idx.size // max_voxels)
    pick = np.zeros(mask.size, dtype=bool)
    pick[idx[::step]] = True
    pick = pick.reshape(mask.shape)
    rows = [np.asarray(dwi[:, :, z])[pick[:, :, z]] for z in range(mask.shape[2]) if pick[:, :, z].any()]
    return np.concatenate(rows).astype(np.float64)
