"""The one whole-volume PRISM path: plan → fit each slab → stitch.

``prismflow-fit``, the BIDS app's pydra tasks and the benchmarks all call these three functions
(``fit_volume`` is the three in a row in one process; the BIDS app runs them as separate tasks
and ships the plan between them as JSON), so the same data, seed and plan give the same maps
whichever way they are run.

- :func:`plan_volume` decides everything that must be the same for every slab: the slabs
  (thickness from ``slab_size`` capped by the memory budget, overlap exact), the noise σ
  (one estimate per volume, :func:`volume_noise_sigma`), the device (resolved: never
  ``"auto"`` after this point), the workers, and the model settings (the ``PrismConfig``
  every slab uses). The plan is a frozen dataclass with :meth:`VolumePlan.to_dict` /
  :meth:`VolumePlan.from_dict`.
- :func:`fit_planned_slab` fits slab ``i`` of a plan.
- :func:`stitch_volume` blends the slab fits back (fibre matching, then the near-parallel
  merge) into one :class:`~prismflow.prism.result.PrismFit`.

Arrays in, arrays out: no file paths. Axis letters: V voxels, N measurements, K fibres.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..io.errors import InputError
from ..io.gradients import Acquisition
from .config import PrismConfig, VolumeConfig
from .fit import estimate_noise_sigma, resolve_device
from .response import estimate_diffusivities
from .memory import (WORKER_OVERHEAD_GIB, bytes_per_voxel, default_budget_gib, peak_rss_gib,
                     slab_size_for_memory, stitch_gib)
from .parallel import SlabJob, fit_job, plan_workers, run_jobs
from .result import PrismFit
from .slabs import Slab, plan_slabs, slab_overlaps, stitch_slabs

log = logging.getLogger(__name__)

#: Voxels sampled (evenly spaced over the mask) for the volume's noise σ.
NOISE_SAMPLE_VOXELS = 50_000


@dataclass(frozen=True)
class VolumePlan:
    """Everything every slab fit of one volume shares; JSON-serialisable (:meth:`to_dict`).

    shape : (X, Y, Z) of the volume; n_meas : N; n_voxels : voxels in the mask.
    slabs : the slabs, in order; slab_size : the thickest slab (slices); slab_overlap : slices
        shared by neighbouring slabs (the geometry: ``slab_overlaps(slabs)`` are all equal to it).
    noise_sigma : σ relative to b0, estimated once for the whole volume.
    device : the resolved torch device (``"cpu"``, ``"cuda:0"``), never ``"auto"``.
    mem_gb : the budget the plan was made for, GiB; stitch_gib : its stitching share.
    workers, threads : slabs fitted at once, torch threads per slab fit.
    config : ``PrismConfig.to_dict()`` with the resolved device: the model settings every slab
        uses (per-volume estimates, e.g. of diffusivities, are stored here by the planner).
    volume : the ``VolumeConfig.to_dict()`` that was asked for.
    """

    shape: tuple[int, int, int]
    n_meas: int
    n_voxels: int
    slabs: tuple[Slab, ...]
    slab_size: int
    slab_overlap: int
    noise_sigma: float
    device: str
    mem_gb: float
    stitch_gib: float
    workers: int
    threads: int
    config: dict
    volume: dict = field(default_factory=dict)

    @property
    def axis(self) -> int:
        return self.slabs[0].axis

    @property
    def warm_start(self) -> str | None:
        return self.volume.get("warm_start")

    def prism_config(self) -> PrismConfig:
        """The :class:`PrismConfig` every slab of this plan is fitted with."""
        return PrismConfig.from_dict(self.config)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slabs"] = [[s.index, s.start, s.stop, s.axis] for s in self.slabs]
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VolumePlan":
        d = dict(d)
        d["slabs"] = tuple(Slab(*map(int, s)) for s in d["slabs"])
        d["shape"] = tuple(int(x) for x in d["shape"])
        return cls(**d)


def device_name(device: torch.device) -> str:
    """``cuda`` → ``cuda:<current index>``; others unchanged (what the plan records)."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _check_inputs(dwi, acq: Acquisition, mask) -> np.ndarray:
    if len(dwi.shape) != 4:
        raise InputError(f"dwi must be 4-D (X, Y, Z, N); got shape {tuple(dwi.shape)}")
    if dwi.shape[3] != len(acq):
        raise InputError(f"the image has {dwi.shape[3]} volumes but the gradient table lists "
                         f"{len(acq)}")
    mask = np.ones(dwi.shape[:3], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != tuple(dwi.shape[:3]):
        raise InputError(f"mask shape {mask.shape} does not match the image {tuple(dwi.shape[:3])}")
    if not mask.any():
        raise InputError("the mask is empty: no voxel to fit")
    return mask


def masked_sample(dwi, mask: np.ndarray, max_voxels: int = NOISE_SAMPLE_VOXELS) -> np.ndarray:
    """(≤ max_voxels, N) float64: evenly spaced mask voxels, read slice by slice along z.

    Reading the whole masked volume at once would hold a second copy of it in memory; a memory
    map of an uncompressed NIfTI works.
    """
    idx = np.flatnonzero(mask)
    step = max(1, idx.size // max_voxels)
    pick = np.zeros(mask.size, dtype=bool)
    pick[idx[::step]] = True
    pick = pick.reshape(mask.shape)
    rows = [np.asarray(dwi[:, :, z])[pick[:, :, z]] for z in range(mask.shape[2])
            if pick[:, :, z].any()]
    return np.concatenate(rows).astype(np.float64)


def volume_noise_sigma(dwi, acq: Acquisition, mask: np.ndarray, cfg: PrismConfig) -> float:
    """σ relative to b0 of a whole volume: :func:`~prismflow.prism.fit.estimate_noise_sigma` on
    :func:`masked_sample` (falls back to ``cfg.calibration.sigma_init``). The only σ
    estimate of slab-wise fitting: every slab uses it."""
    return float(estimate_noise_sigma(masked_sample(dwi, mask), acq, cfg.calibration.sigma_init))


@contextmanager
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plan_volume(dwi, acq: Acquisition, mask: np.ndarray | None, config: PrismConfig,
                volume: VolumeConfig | None = None) -> VolumePlan:
    """Plan the slab-wise fit of a (X, Y, Z, N) volume (a memory map works).

    Parameters
    ----------
    dwi : (X, Y, Z, N) signal, data units.
    acq : the acquisition (N measurements).
    mask : (X, Y, Z) bool, or None for every voxel.
    config : the model settings; its ``device`` may be ``"auto"`` (resolved here).
    volume : slab and compute settings (default ``VolumeConfig()``).

    Returns
    -------
    VolumePlan. Slab thickness: ``volume.slab_size`` (or the whole axis when None), made
    thinner when the worst slab would not fit its worker's share of ``volume.mem_gb``: per
    worker, worst slab voxels × :func:`~prismflow.prism.memory.bytes_per_voxel` +
    :data:`~prismflow.prism.memory.WORKER_OVERHEAD_GIB`, after the stitched result
    (:func:`~prismflow.prism.memory.stitch_gib`) is taken off the budget.
    """
    volume = volume or VolumeConfig()
    mask = _check_inputs(dwi, acq, mask)
    axis, overlap = volume.axis, volume.slab_overlap
    device = resolve_device(config.device)
    cfg = config.replace(device=device_name(device))
    # model settings every slab uses are fixed here, once per volume, and travel in the plan
    # (on one torch thread: a reduction's result depends on the thread count, and the plan must
    # not depend on what the calling process set — prismflow-fit and a pydra task differ there)
    estimate_cpu = 0.0
    if cfg.estimate_diffusivities and not cfg.diffusivity_source:
        estimate_cpu = time.process_time()
        with _one_torch_thread():
            est = estimate_diffusivities(masked_sample(dwi, mask), acq,
                                         defaults=cfg.diffusivities, seed=cfg.seed)
        cfg = cfg.replace(diffusivities=est.diffusivities, diffusivity_source=est.summary())
        estimate_cpu = time.process_time() - estimate_cpu
        log.info("diffusivities for the whole volume (%.1f CPU s): %s", estimate_cpu, est.summary())
    budget = float(volume.mem_gb) if volume.mem_gb is not None else default_budget_gib(device)
    n_meas, k, n_vox = len(acq), cfg.n_fibres, int(mask.sum())
    n_slices = mask.shape[axis]
    per_slice = mask.sum(axis=tuple(d for d in range(3) if d != axis))
    want = volume.slab_size if volume.slab_size is not None else n_slices
    want = max(overlap + 1, min(int(want), n_slices))
    # workers first, thick slabs second: a worker must at least hold a slab of 2·overlap + 2
    # slices; beyond that the budget goes into slab thickness (up to ``slab_size``)
    min_size = min(want, 2 * overlap + 2)
    worst = np.convolve(per_slice, np.ones(min_size), mode="valid").max()
    n_slabs_guess = len(plan_slabs(n_slices, slab_size=want, slab_overlap=overlap, axis=axis))
    stitch = stitch_gib(n_vox, n_meas, k, slab_size=want, slab_overlap=overlap)
    fit_budget = max(budget - stitch, 0.25 * budget)
    n_workers, threads = plan_workers(n_slabs_guess, device, volume.workers, fit_budget,
                                      worst * bytes_per_voxel(n_meas, k) / 2**30
                                      + WORKER_OVERHEAD_GIB, n_voxels=n_vox)
    per_worker = fit_budget / n_workers
    usable = max(per_worker - WORKER_OVERHEAD_GIB, 0.25 * per_worker)
    cap = slab_size_for_memory(mask, n_meas, k, usable, axis=axis, slab_overlap=overlap)
    if cap < want:
        log.info("memory budget %.2f GiB over %d worker(s): slabs of at most %d slices "
                 "instead of %d", budget, n_workers, cap, want)
    slabs = plan_slabs(n_slices, slab_size=min(want, cap), slab_overlap=overlap, axis=axis)
    plan = VolumePlan(
        shape=tuple(int(x) for x in mask.shape), n_meas=n_meas, n_voxels=n_vox,
        slabs=tuple(slabs), slab_size=max(s.stop - s.start for s in slabs),
        slab_overlap=overlap,
        noise_sigma=volume_noise_sigma(dwi, acq, mask, cfg), device=device_name(device),
        mem_gb=budget, stitch_gib=stitch, workers=min(n_workers, len(slabs)), threads=threads,
        config=cfg.to_dict(), volume=volume.to_dict())
    log.info("plan: %d voxels in %d slab(s) of at most %d slices (overlap %d) along axis %d on "
             "%s: %d worker(s) × %d thread(s), budget %.2f GiB, noise σ %.4g (seed %d)",
             n_vox, len(slabs), plan.slab_size, plan.slab_overlap, axis, plan.device,
             plan.workers, plan.threads, budget, plan.noise_sigma, cfg.seed)
    return plan


def slab_job(plan: VolumePlan, dwi, mask: np.ndarray, i: int) -> SlabJob | None:
    """The :class:`~prismflow.prism.parallel.SlabJob` of slab ``i`` (None when it has no voxel).

    Only the slab's voxels are read from ``dwi`` (a memory map works), as float32.
    """
    slab = plan.slabs[i]
    mask = np.asarray(mask, dtype=bool)
    sub_mask = mask[slab.slicer()]
    if not sub_mask.any():
        return None
    # identity of each voxel in the whole volume, so the seeded start matches a whole fit
    coords = list(np.nonzero(sub_mask))
    coords[slab.axis] = coords[slab.axis] + slab.start
    flat_global = np.ravel_multi_index(tuple(coords), mask.shape)
    data = np.asarray(dwi[slab.slicer(4)])[sub_mask].astype(np.float32, copy=False)
    return SlabJob(slab.index, data, sub_mask, flat_global, slab.axis, plan.slab_overlap,
                   plan.noise_sigma, f"slab {slab.index} [{slab.start}:{slab.stop})")


def fit_planned_slab(plan: VolumePlan, dwi, acq: Acquisition, mask: np.ndarray | None, i: int,
                     *, progress: bool = False) -> PrismFit | None:
    """Fit slab ``i`` of ``plan`` (None when the slab has no mask voxel).

    On a CUDA out-of-memory error the slab is split in two and retried (one log line).
    """
    mask = np.ones(plan.shape, dtype=bool) if mask is None else mask
    job = slab_job(plan, dwi, mask, i)
    if job is None:
        return None
    fit = fit_job(job, acq, plan.prism_config(), progress=progress, warm_start=plan.warm_start)
    fit.info["peak_rss_gib"] = peak_rss_gib()
    fit.info["threads"] = torch.get_num_threads()
    return fit


def stitch_volume(plan: VolumePlan, parts: list[PrismFit | None]) -> PrismFit:
    """Blend the slab fits of ``plan`` (one per slab, None for an empty one) into one fit.

    The volume's mask is rebuilt from the slabs' own masks. No voxel of the result holds two
    fibres closer than the merge angle of :func:`~prismflow.prism.fixels.merge_parallel`.
    ``info`` records the plan (slabs, overlap, σ, device, seed).
    """
    if len(parts) != len(plan.slabs):
        raise ValueError(f"{len(parts)} slab fits for a plan of {len(plan.slabs)} slabs")
    mask = np.zeros(plan.shape, dtype=bool)
    for p, s in zip(parts, plan.slabs):
        if p is not None:
            mask[s.slicer()] |= p.mask
    fit = stitch_slabs(parts, list(plan.slabs), mask)
    used = [p for p in parts if p is not None]
    if set(slab_overlaps(list(plan.slabs))) - {plan.slab_overlap}:
        raise ValueError(f"the plan's slabs overlap by {slab_overlaps(list(plan.slabs))} slices, "
                         f"not the {plan.slab_overlap} it records")
    fit.info.update(
        slab_size=plan.slab_size, slab_overlap=plan.slab_overlap, noise_sigma=plan.noise_sigma,
        device=plan.device, seed=int(plan.config["seed"]), workers=plan.workers,
        threads=plan.threads, mem_gb=plan.mem_gb, stitch_gib=plan.stitch_gib,
        warm_start=plan.warm_start, plan=plan.to_dict(),
        worker_peak_rss_gib=max(p.info.get("peak_rss_gib", 0.0) for p in used),
        oom_splits=sum(p.info.get("oom_splits", 0) for p in used),
        single_shell=next((p.info["single_shell"] for p in used if p.info.get("single_shell")), None))
    # what the evidence test cost and decided, summed over slabs (overlap voxels count twice)
    sel = [p.info["selection"] for p in used if p.info.get("selection")]
    if sel:
        fit.info["selection"] = {
            "rule": sel[0].get("rule"), "slabs": len(sel),
            **{key: float(sum(r.get(key, 0.0) for r in sel)) for key in ("seconds", "cpu_seconds")},
            **{key: int(sum(r.get(key, 0) for r in sel)) for key in ("pruned_voxels",)},
            **{key: [int(sum(r[key][i] for r in sel if i < len(r.get(key, []))))
                     for i in range(max(len(r.get(key, [])) for r in sel))]
               for key in ("tested", "removed")}}
        pools = [r["pooling"] for r in sel if r.get("pooling")]
        if pools:
            fit.info["selection"]["pooling"] = {
                "angle_deg": pools[0]["angle_deg"],
                "gained_fibres": int(sum(r["gained_fibres"] for r in pools)),
                "cpu_seconds": float(sum(r["cpu_seconds"] for r in pools))}
    return fit


def fit_volume(dwi, acq: Acquisition, mask: np.ndarray | None, cfg: PrismConfig,
               volume: VolumeConfig | None = None, *, progress: bool = True,
               **volume_changes) -> PrismFit:
    """Fit a (X, Y, Z, N) volume slab by slab and stitch the slabs: :func:`plan_volume`, then
    :func:`fit_planned_slab` for every slab (in worker processes on CPU when the plan has more
    than one worker), then :func:`stitch_volume`.

    ``volume_changes`` are :class:`VolumeConfig` fields (``slab_size=12``, ``workers=1``, …)
    applied on top of ``volume``; ``None`` values keep the defaults.
    """
    volume = (volume or VolumeConfig()).with_changes(**volume_changes)
    mask = _check_inputs(dwi, acq, mask)
    t_plan = (time.perf_counter(), time.process_time())
    plan = plan_volume(dwi, acq, mask, cfg, volume)
    t_plan = (time.perf_counter() - t_plan[0], time.process_time() - t_plan[1])
    t0 = time.perf_counter()
    device = torch.device(plan.device)
    fits = run_jobs(lambda i: slab_job(plan, dwi, mask, i), len(plan.slabs), acq,
                    plan.prism_config(), workers=plan.workers, threads=plan.threads,
                    device=device, progress=progress, warm_start=plan.warm_start)
    fit = stitch_volume(plan, [fits.get(i) for i in range(len(plan.slabs))])
    fit.info["wall_seconds"] = time.perf_counter() - t0
    # planning = the per-volume estimates (diffusivities, σ) and the slab layout
    fit.info["plan_seconds"], fit.info["plan_cpu_seconds"] = t_plan
    fit.info["peak_rss_gib"] = peak_rss_gib()
    log.info("fitted %d voxels in %.1f s", plan.n_voxels, fit.info["wall_seconds"])
    return fit
