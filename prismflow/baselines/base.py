"""The one interface every baseline follows: ``method.fit_peaks(data, acq, mask=None)``.

Axis letters: V voxels (in the mask, C order), N measurements, K peaks, X/Y/Z space.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from prismflow.io import Acquisition, InputError

from .peaks import PeakRule
from .responses import ResponseTruth

logger = logging.getLogger(__name__)


@dataclass
class PeakResult:
    """Peaks of one method on V voxels.

    Attributes
    ----------
    directions : (V, K, 3) float — unit vectors in the bvec frame; zero rows where no peak.
    amplitudes : (V, K) float — peak amplitude (FOD/ODF value) or fibre fraction, 0 where
        absent, sorted descending per voxel.
    seconds : float — wall time of the fit on these voxels: response estimation, model fit,
        peak extraction and (MRtrix3) file I/O and subprocesses; *excludes* one-off builds that
        depend only on the acquisition (FORCE library, ODF-FP dictionary), which are reported
        in ``info["setup_seconds"]``.
    info : dict — settings used (shell, response source, library size, peak rule, ...).
    """

    directions: np.ndarray
    amplitudes: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)

    @property
    def n_peaks(self) -> np.ndarray:
        """(V,) int — number of peaks found per voxel."""
        return np.sum(self.amplitudes > 0, axis=1)


def flatten_data(data: np.ndarray, acq: Acquisition, mask: np.ndarray | None) -> np.ndarray:
    """(V, N) float64 signals of the voxels in ``mask`` (C order); validates shapes."""
    data = np.asarray(data)
    if data.ndim not in (2, 4):
        raise InputError(f"data must have shape (V, N) or (X, Y, Z, N); got {data.shape}")
    if data.shape[-1] != len(acq):
        raise InputError(f"data has {data.shape[-1]} measurements but the acquisition lists "
                         f"{len(acq)} b-values; pass the gradient table of this data")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape[:-1]:
            raise InputError(f"mask shape {mask.shape} does not match the data's spatial shape "
                             f"{data.shape[:-1]}")
        flat = data[mask]
    else:
        flat = data.reshape(-1, data.shape[-1])
    if not np.all(np.isfinite(flat)):
        raise InputError("data contain NaN or inf values inside the mask")
    return np.ascontiguousarray(flat, dtype=np.float64)


class BaselineMethod(ABC):
    """A peer method. Subclasses implement :meth:`_fit` on (V, N) data.

    Parameters
    ----------
    response : "data" or "oracle" — response functions estimated from the data (the method's
        usual routine) or built from ``oracle`` (the simulation's ground truth).
    oracle : ResponseTruth or None — required when ``response="oracle"``.
    n_peaks : int — at most this many peaks per voxel.
    relative_threshold, min_separation_deg : the shared peak rule (see :mod:`.peaks`).
    """

    name: str = "base"

    def __init__(self, *, response: str = "data", oracle: ResponseTruth | None = None,
                 n_peaks: int = 3, relative_threshold: float = 0.5,
                 min_separation_deg: float = 15.0):
        if response not in ("data", "oracle"):
            raise InputError(f"response must be 'data' or 'oracle'; got {response!r}")
        if response == "oracle" and oracle is None:
            raise InputError(f"{self.name}: response='oracle' needs oracle=ResponseTruth(...)")
        self.response = response
        self.oracle = oracle
        self.rule = PeakRule(n_peaks=n_peaks, relative_threshold=relative_threshold,
                             min_separation_deg=min_separation_deg)

    def fit_peaks(self, data: np.ndarray, acq: Acquisition, mask: np.ndarray | None = None
                  ) -> PeakResult:
        """Fit the method and return its peaks.

        Parameters
        ----------
        data : (V, N) or (X, Y, Z, N) float — signal, a.u. (not normalised).
        acq : Acquisition — b-values in s/mm², bvec-frame unit directions.
        mask : (V,) or (X, Y, Z) bool, optional — voxels to fit (all when None).

        Returns
        -------
        PeakResult with (V, K, 3) directions and (V, K) amplitudes, V = voxels in the mask.
        """
        flat = flatten_data(data, acq, mask)
        setup_seconds = self.prepare(acq)
        t0 = time.perf_counter()
        dirs, amps, info = self._fit(flat, acq)
        seconds = time.perf_counter() - t0
        order = np.argsort(-amps, axis=1, kind="stable")
        dirs = np.take_along_axis(dirs, order[:, :, None], axis=1)
        amps = np.take_along_axis(amps, order, axis=1)
        dirs[amps <= 0] = 0.0
        amps = np.maximum(amps, 0.0)
        base = {"method": self.name, "response": self.response, "peak_rule": self.rule.describe(),
                "n_voxels": int(flat.shape[0]), "setup_seconds": float(setup_seconds),
                "seconds_excludes": "one-off acquisition-only builds (setup_seconds)"}
        base.update(info)
        logger.info("%s: %d voxels in %.2f s (setup %.2f s)", self.name, flat.shape[0],
                    seconds, setup_seconds)
        return PeakResult(dirs, amps, float(seconds), base)

    def prepare(self, acq: Acquisition) -> float:
        """One-off builds that depend only on the acquisition; returns seconds spent."""
        return 0.0

    @abstractmethod
    def _fit(self, data: np.ndarray, acq: Acquisition
             ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(V, N) data -> (V, K, 3) directions, (V, K) amplitudes, info dict."""
