"""Memory budgets of slab-wise fitting: free memory, the default budget, peak usage.

Units: GiB (2³⁰ bytes) throughout.
"""

from __future__ import annotations

import resource
import sys

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
