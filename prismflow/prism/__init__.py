"""PRISM: differentiable analysis-by-synthesis fixel recovery (multi-compartment forward model,
nuisance calibration, priors, Rprop, slab-wise whole-volume fitting).

Plain torch/numpy; no workflow engine. Typical use::

    from prismflow.prism import PrismConfig, PrismModel, fit_volume
    fit = PrismModel(acq, PrismConfig(loss="nll")).fit(signal)      # (V, N) independent voxels
    fit = fit_volume(dwi, acq, mask, PrismConfig.for_volume())       # (X, Y, Z, N) in slabs
"""

from .config import CalibrationConfig, Diffusivities, PrismConfig, PriorWeights
from .fit import PrismModel, fit_patch, resolve_device
from .model import predict
from .result import PrismFit
from .slabs import Slab, fit_slab, fit_volume, plan_slabs, slab_size_for_memory, stitch_slabs

__all__ = ["CalibrationConfig", "Diffusivities", "PrismConfig", "PriorWeights", "PrismModel",
           "PrismFit", "Slab", "fit_patch", "fit_slab", "fit_volume", "plan_slabs", "predict",
           "resolve_device", "slab_size_for_memory", "stitch_slabs"]
