"""Baseline tasks: any method of :mod:`prismflow.baselines` on the same inputs as PRISM."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from fileformats.generic import File
from ._define import python_task

from ._common import limit_threads, load_mask, load_series, save_peaks

logger = logging.getLogger(__name__)


def fit_baseline_peaks(data, acq, mask, method: str, options: dict):
    """Peaks of ``method`` as volumes: directions (X, Y, Z, K, 3), amplitudes (X, Y, Z, K),
    and the :class:`~prismflow.baselines.PeakResult` (for its timing and info)."""
    from prismflow.baselines import get_method

    res = get_method(method, **options).fit_peaks(data, acq, mask=mask)
    K = res.directions.shape[1]
    dirs = np.zeros(mask.shape + (K, 3))
    amps = np.zeros(mask.shape + (K,))
    dirs[mask] = res.directions
    amps[mask] = res.amplitudes
    return dirs, amps, res


@python_task(outputs=["peaks", "peaks_scanner", "info"])
def FitBaseline(dwi: File, bval: File, bvec: File, mask: File, method: str,
                options: dict | None = None, n_threads: int = 1) -> tuple[File, File, File]:
    """Fit baseline ``method``; write ``peaks_<method>.nii.gz`` (bvec frame, for tracking),
    ``scanner_peaks_<method>.nii.gz`` (scanner frame, as MRtrix3 and PRISM's derivatives) and
    ``info.json``."""
    from prismflow.prism.fixels import bvec_frame_to_world

    limit_threads(n_threads)
    data, acq, affine = load_series(dwi, bval, bvec)
    dirs, amps, res = fit_baseline_peaks(data, acq, load_mask(mask), method, dict(options or {}))
    peaks = save_peaks(dirs, amps, affine, f"peaks_{method}.nii.gz")
    scanner = save_peaks(bvec_frame_to_world(dirs, affine), amps, affine,
                         f"scanner_peaks_{method}.nii.gz")
    info = Path("info.json").absolute()
    info.write_text(json.dumps({"method": method, "options": options or {},
                                "seconds": res.seconds, "info": res.info}, indent=2, default=str))
    return peaks, scanner, info
