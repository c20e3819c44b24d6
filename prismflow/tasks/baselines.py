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


def seeded_options(method: str, options: dict, seed: int) -> tuple[dict, int | None]:
    """``options`` with the run's ``seed`` added when ``method`` draws random numbers (its
    constructor takes a ``seed``), and the seed it will use (None: the method is not random)."""
    import inspect

    from prismflow.baselines import method_class

    if "seed" not in inspect.signature(method_class(method).__init__).parameters:
        return dict(options), None
    return {**options, "seed": int(seed)}, int(seed)


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
                options: dict | None = None, n_threads: int = 1,
                seed: int = 0) -> tuple[File, File, File]:
    """Fit baseline ``method``; write ``peaks_<method>.nii.gz`` (bvec frame, for tracking),
    ``scanner_peaks_<method>.nii.gz`` (scanner frame, as MRtrix3 and PRISM's derivatives) and
    ``info.json`` (with ``seed`` when the method used one)."""
    from prismflow.io.peaks import bvec_to_scanner

    limit_threads(n_threads)
    data, acq, affine = load_series(dwi, bval, bvec)
    opts, used_seed = seeded_options(method, dict(options or {}), seed)
    dirs, amps, res = fit_baseline_peaks(data, acq, load_mask(mask), method, opts)
    peaks = save_peaks(dirs, amps, affine, f"peaks_{method}.nii.gz")
    scanner = save_peaks(bvec_to_scanner(dirs, affine), amps, affine,
                         f"scanner_peaks_{method}.nii.gz")
    info = Path("info.json").absolute()
    record = {"method": method, "options": options or {}, "seconds": res.seconds, "info": res.info}
    if used_seed is not None:
        record["seed"] = used_seed
    info.write_text(json.dumps(record, indent=2, default=str))
    return peaks, scanner, info
