"""Running slab fits: worker processes on CPU, data prefetch on CUDA, split-and-retry on OOM.

A slab job is the slab's own data (V, N), its mask and the global voxel indices; workers never
see the whole volume, so a worker's memory is bounded by its slab (``bytes_per_voxel``).
On CPU, ``workers`` processes each run torch with ``threads`` intra-op threads, chosen so
that workers × threads never exceeds the cores. On CUDA slabs run one after the other in this
process while a thread cuts out the next slab's data.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch

from ..io.gradients import Acquisition
from .config import PrismConfig
from .fit import fit_patch
from .memory import peak_rss_gib
from .result import PrismFit
from .slabs import plan_slabs, stitch_slabs

log = logging.getLogger(__name__)


@dataclass
class SlabJob:
    """Everything one slab fit needs (picklable)."""

    index: int
    data: np.ndarray            #: (V, N) float32, data units
    sub_mask: np.ndarray        #: (X, Y, Z') bool, the slab's mask
    global_index: np.ndarray    #: (V,) int64 flat index in the whole volume
    axis: int
    slab_overlap: int           #: overlap of the halves if an out-of-memory error splits it
    noise_sigma: float | None
    desc: str


def _rows_of(sub_mask: np.ndarray, part: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Rows (into the voxels of ``sub_mask``) of the voxels inside ``part``, and its mask."""
    ids = np.full(sub_mask.shape, -1, dtype=np.int64)
    ids[sub_mask] = np.arange(int(sub_mask.sum()))
    m = sub_mask[part]
    return ids[part][m], m


def fit_job(job: SlabJob, acq: Acquisition, cfg: PrismConfig, *, progress: bool = False,
            warm_start: str | None = None, _depth: int = 0) -> PrismFit:
    """Fit one slab; on a CUDA out-of-memory error split it in two along ``job.axis`` and retry.

    The halves overlap by ``job.slab_overlap`` slices and are stitched like slabs. One warning
    line is logged per split.
    """
    init = None
    if warm_start:
        from .warmstart import warm_start_init

        init = warm_start_init(job.data, acq, cfg, method=warm_start, global_index=job.global_index)
    try:
        return _fit_patch(job, acq, cfg, init=init, progress=progress)
    except torch.OutOfMemoryError:
        if job.sub_mask.shape[job.axis] < 2:
            raise
    # outside the except block: the failed attempt's frames (and device tensors) are released
    n = job.sub_mask.shape[job.axis]
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    overlap = min(job.slab_overlap, max(0, n // 2 - 1))
    half = math.ceil((n + overlap) / 2)
    subs = plan_slabs(n, slab_size=half, slab_overlap=overlap, axis=job.axis)
    log.warning("%s: CUDA out of memory with %d voxels; splitting into %d slabs of %d slices "
                "and retrying", job.desc, job.data.shape[0], len(subs), half)
    parts = []
    for s in subs:
        rows, m = _rows_of(job.sub_mask, s.slicer())
        if rows.size == 0:
            parts.append(None)
            continue
        sub = SlabJob(job.index, job.data[rows], m, job.global_index[rows], job.axis, overlap,
                      job.noise_sigma, f"{job.desc}/{s.index}")
        parts.append(fit_job(sub, acq, cfg, progress=progress, warm_start=warm_start,
                             _depth=_depth + 1))
    fit = stitch_slabs(parts, subs, job.sub_mask)
    used = [p for p in parts if p is not None]
    fit.info["voxels"] = int(job.data.shape[0])
    fit.info["final_loss"] = float(sum(p.info["final_loss"] * p.info["voxels"] for p in used)
                                   / max(1, sum(p.info["voxels"] for p in used)))
    fit.info["oom_splits"] = 1 + sum(p.info.get("oom_splits", 0) for p in used)
    return fit


def _fit_patch(job: SlabJob, acq, cfg, *, init, progress) -> PrismFit:
    """The one call into the core (a seam for tests that simulate device errors)."""
    return fit_patch(job.data, acq, cfg, grid_mask=job.sub_mask, global_index=job.global_index,
                     noise_sigma=job.noise_sigma, init=init, desc=job.desc, progress=progress)


# ----------------------------------------------------------------------------- CPU workers

def _worker_init(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _worker_run(job: SlabJob, acq: Acquisition, cfg: PrismConfig, warm_start) -> tuple[int, PrismFit]:
    fit = fit_job(job, acq, cfg, progress=False, warm_start=warm_start)
    fit.info["peak_rss_gib"] = peak_rss_gib()
    fit.info["threads"] = torch.get_num_threads()
    return job.index, fit


#: Automatic worker processes only pay off (spawn + torch import) above this many voxels each.
MIN_VOXELS_PER_WORKER = 5_000


def plan_workers(n_jobs: int, device: torch.device, workers: int | None,
                 budget_gib: float, per_job_gib: float, n_voxels: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) for ``n_jobs`` slabs.

    CUDA, or inside a daemonic process: one in-process worker. CPU: ``workers`` when given,
    else as many as there are cores (``os.sched_getaffinity``), slabs, budget / per-slab
    memory and ``n_voxels`` / :data:`MIN_VOXELS_PER_WORKER` allow; one thread each, so that
    workers × threads never exceeds the cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return 1, torch.get_num_threads()
    if mp.current_process().daemon:
        # inside a daemonic worker (dask, some pools) processes may not have children
        return 1, torch.get_num_threads()
    if workers is None:
        by_mem = int(budget_gib // max(per_job_gib, 1e-9)) if per_job_gib > 0 else cores
        by_size = cores if n_voxels is None else max(1, -(-n_voxels // MIN_VOXELS_PER_WORKER))
        workers = max(1, min(cores, n_jobs, by_mem, by_size))
    workers = max(1, min(int(workers), max(1, n_jobs)))
    # one thread per worker: the chunked kernel's small ops lose badly to OpenMP barriers when
    # the cores are shared (36× slower measured with 2 threads on 2 busy cores), so the
    # parallelism on CPU comes from worker processes only
    return workers, 1


def run_jobs(make_job, n_jobs: int, acq: Acquisition, cfg: PrismConfig, *, workers: int,
             threads: int, device: torch.device, progress: bool = True,
             warm_start: str | None = None) -> dict[int, PrismFit]:
    """Fit jobs ``make_job(i)`` (None for an empty slab) for i in range(n_jobs); {i: fit}.

    ``workers`` > 1: a spawn process pool with at most ``workers`` jobs in flight (each job's
    data is cut out only when it is submitted). Otherwise in this process, with the next job's
    data prepared by a thread while the current one fits (the CUDA prefetch).
    """
    out: dict[int, PrismFit] = {}
    if workers <= 1:
        before = torch.get_num_threads()
        if device.type == "cpu":
            torch.set_num_threads(threads)
        with ThreadPoolExecutor(max_workers=1) as pre:
            nxt = pre.submit(make_job, 0) if n_jobs else None
            for i in range(n_jobs):
                job = nxt.result()
                nxt = pre.submit(make_job, i + 1) if i + 1 < n_jobs else None
                if job is None:
                    continue
                fit = fit_job(job, acq, cfg, progress=progress, warm_start=warm_start)
                fit.info["peak_rss_gib"] = peak_rss_gib()
                fit.info["threads"] = torch.get_num_threads()
                out[i] = fit
        torch.set_num_threads(before)
        return out
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        pending = set()
        i = 0
        while i < n_jobs or pending:
            while i < n_jobs and len(pending) < workers:
                job = make_job(i)
                if job is not None:
                    pending.add(pool.submit(_worker_run, job, acq, cfg, warm_start))
                    del job
                i += 1
            if not pending:
                continue
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                idx, fit = fut.result()
                out[idx] = fit
                if progress:
                    log.info("slab %d done: %d voxels, %d iterations, %.1f s", idx,
                             fit.info["voxels"], fit.info["iterations"], fit.info["seconds"])
    return out
