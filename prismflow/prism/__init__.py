"""PRISM: differentiable analysis-by-synthesis fixel recovery (multi-compartment forward model,
nuisance calibration, priors, Rprop, slab-wise whole-volume fitting).

Plain torch/numpy; no workflow engine. Typical use::

    from prismflow.prism import PrismConfig, PrismModel, fit_volume
    fit = PrismModel(acq, PrismConfig(loss="nll")).fit(signal)      # (V, N) independent voxels
    fit = fit_volume(dwi, acq, mask, PrismConfig.for_volume())       # (X, Y, Z, N) in slabs
    plan = plan_volume(dwi, acq, mask, cfg, VolumeConfig(slab_size=20))  # the same, step by step
    fit = stitch_volume(plan, [fit_planned_slab(plan, dwi, acq, mask, i)
                               for i in range(len(plan.slabs))])
"""

from .config import CalibrationConfig, Diffusivities, PrismConfig, PriorWeights, VolumeConfig
from .fit import PrismModel, fit_patch, resolve_device
from .model import predict
from .result import PrismFit
from .slabs import Slab, plan_slabs, stitch_slabs
from .volume import VolumePlan, fit_planned_slab, fit_volume, plan_volume, stitch_volume

__all__ = ["CalibrationConfig", "Diffusivities", "PrismConfig", "PriorWeights", "PrismModel",
           "PrismFit", "Slab", "VolumeConfig", "VolumePlan", "fit_patch", "fit_planned_slab",
           "fit_volume", "plan_slabs", "plan_volume", "predict", "resolve_device",
           "stitch_slabs", "stitch_volume"]
