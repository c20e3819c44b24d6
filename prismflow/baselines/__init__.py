"""Peer baselines run beside PRISM on the same data: one interface, one peak rule.

>>> from prismflow.baselines import get_method, METHOD_NAMES
>>> method = get_method("dipy-csd", response="oracle", oracle=ResponseTruth(), n_peaks=3)
>>> res = method.fit_peaks(data, acq, mask=None)   # doctest: +SKIP
>>> res.directions.shape, res.amplitudes.shape      # (V, K, 3), (V, K)   # doctest: +SKIP

Methods (``METHOD_NAMES``): "dipy-csd", "dipy-msmt", "mrtrix-csd", "mrtrix-msmt", "force",
"odffp". Heavy libraries (dipy, nipype, torch, cvxpy) are imported only when a method is built.
"""

from __future__ import annotations

from importlib import import_module

from .base import BaselineMethod, PeakResult
from .peaks import PeakRule, angle_deg
from .responses import ResponseTruth

#: name -> (module, class)
_REGISTRY = {
    "dipy-csd": ("prismflow.baselines.dipy_csd", "DipyCSD"),
    "dipy-msmt": ("prismflow.baselines.dipy_csd", "DipyMSMT"),
    "mrtrix-csd": ("prismflow.baselines.mrtrix", "MrtrixCSD"),
    "mrtrix-msmt": ("prismflow.baselines.mrtrix", "MrtrixMSMT"),
    "force": ("prismflow.baselines.force", "ForceMethod"),
    "odffp": ("prismflow.baselines.odffp", "ODFFingerprinting"),
}

METHOD_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def method_class(name: str) -> type[BaselineMethod]:
    """The class registered under ``name`` (one of ``METHOD_NAMES``)."""
    from prismflow.io import InputError

    if name not in _REGISTRY:
        raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    module, cls = _REGISTRY[name]
    return getattr(import_module(module), cls)


def get_method(name: str, *, response: str = "data", oracle: ResponseTruth | None = None,
               n_peaks: int = 3, **method_opts) -> BaselineMethod:
    """Build the baseline ``name`` with its options.

    Parameters
    ----------
    name : one of ``METHOD_NAMES``.
    response : "data" (the method's usual estimate from the data) or "oracle" (from ``oracle``).
    oracle : ResponseTruth — ground truth, required with ``response="oracle"``.
    n_peaks : int — at most this many peaks per voxel.
    **method_opts : method-specific keyword options (see each class), plus the shared
        ``relative_threshold`` (default 0.5) and ``min_separation_deg`` (default 15).
    """
    return method_class(name)(response=response, oracle=oracle, n_peaks=n_peaks, **method_opts)


__all__ = ["get_method", "method_class", "METHOD_NAMES", "BaselineMethod", "PeakResult",
           "PeakRule", "ResponseTruth", "angle_deg"]
