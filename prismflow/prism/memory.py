"""Memory budgets of slab-wise fitting: free memory, the default budget, peak usage, and the
memory model that turns a budget into a slab thickness.

Units: GiB (2³⁰ bytes) throughout, bytes where a name says so.
"""

from __future__ import annotations

import resource
import sys

import numpy as np
import torch

#: Fraction of the free memory a fit takes by default (CPU RAM / CUDA device memory).
CPU_DEFAULT_FRACTION = 0.5
CUDA_DEFAULT_FRACTION = 0.8


def available_gib(device: torch.device | str = "cpu") -> float:
    """Free memory now: RAM available to new allocations (CPU) or free device memory (CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**30
    try:
        import psutil

        return psutil.virtual_memory().available / 2**30
    except ImportError:  # pragma: no cover - psutil is normally present
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    return 4.0  # pragma: no cover


def default_budget_gib(device: torch.device | str = "cpu") -> float:
    """The default ``--mem-gb``: a safe fraction of the free memory of ``device``."""
    device = torch.device(device)
    frac = CUDA_DEFAULT_FRACTION if device.type == "cuda" else CPU_DEFAULT_FRACTION
    return max(0.25, frac * available_gib(device))


def peak_rss_gib(children: bool = False) -> float:
    """Peak resident set size of this process (or of its largest finished child), GiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    kb = resource.getrusage(who).ru_maxrss
    return kb / 2**30 if sys.platform == "darwin" else kb / 2**20


def peak_cuda_gib(device: torch.device | str | None = None) -> float:
    """Peak CUDA memory allocated by torch on ``device`` (0 without CUDA), GiB."""
    if not torch.cuda.is_available():
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**30


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


def stitch_gib(n_voxels: int, n_meas: int, n_fibres: int, *, slab_size: int,
               slab_overlap: int) -> float:
    """Memory of stitching in the calling process, GiB: the slab results (float32 predictions,
    counted once per overlapping slab) and the blended float32 prediction and maps."""
    redundancy = 1.0 + slab_overlap / max(1, slab_size - slab_overlap)
    per_voxel = 4 * n_meas * (1 + redundancy) + 8 * (12 * n_fibres + 16) * (1 + redundancy)
    return n_voxels * per_voxel / 2**30


def slab_size_for_memory(mask: np.ndarray, n_meas: int, n_fibres: int, mem_gb: float, *,
                         axis: int, slab_overlap: int) -> int:
    """The thickest slab (slices) whose worst-case voxel count fits in ``mem_gb`` GiB.

    ``mem_gb`` is what one worker may spend on its voxels (the planner takes the worker's
    fixed :data:`WORKER_OVERHEAD_GIB` off its share first). Never thinner than
    ``slab_overlap + 1`` slices.
    """
    per_slice = np.asarray(mask, dtype=bool).sum(axis=tuple(d for d in range(3) if d != axis))
    budget = mem_gb * 2**30 / bytes_per_voxel(n_meas, n_fibres)
    n = mask.shape[axis]
    best = slab_overlap + 1
    for size in range(slab_overlap + 1, n + 1):
        window = np.convolve(per_slice, np.ones(size), mode="valid").max()
        if window > budget:
            break
        best = size
    return best
