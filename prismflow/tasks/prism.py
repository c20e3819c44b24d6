"""PRISM tasks: plan slabs, fit one slab (split over slabs), stitch the parts (combine).

The parts travel between processes as pickled :class:`prismflow.prism.PrismFit` objects; the
stitched fit is written as one NIfTI per map into ``maps/`` and as a peaks file.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
from pathlib import Path

import nibabel as nib
from fileformats.generic import Directory, File
from ._define import python_task

from prismflow.io import save_nifti_atomic

from ._common import limit_threads, load_mask, load_series

logger = logging.getLogger(__name__)


def plan(mask_path, slab_size: int, overlap: int):
    """The slab plan along z of ``mask_path`` (deterministic: each task can recompute it)."""
    from prismflow.prism import plan_slabs

    mask = load_mask(mask_path)
    return plan_slabs(mask.shape[2], slab_size=slab_size, overlap=overlap, axis=2)


def prism_config(config: dict):
    """A :class:`prismflow.prism.PrismConfig` for image volumes (``PrismConfig.for_volume``:
    spatial priors and calibration on) with the recipe's ``config`` changes applied."""
    from prismflow.prism import PrismConfig

    return PrismConfig.for_volume(**config)


def noise_sigma(dwi, acq, mask, config: dict, max_voxels: int = 200_000) -> float:
    """σ relative to b0 from (a sample of) the masked voxels, once per series, as
    ``fit_volume`` does, so that every slab job uses the same value."""
    import numpy as np

    from prismflow.prism.fit import estimate_noise_sigma

    idx = np.flatnonzero(mask)
    if idx.size > max_voxels:  # evenly spaced sample: deterministic and cheap
        idx = idx[np.linspace(0, idx.size - 1, max_voxels).astype(np.int64)]
    data = np.asarray(dwi).reshape(-1, len(acq))[idx]
    return float(estimate_noise_sigma(data, acq, prism_config(config).calibration.sigma_init))


@python_task(outputs=["slab_indices", "noise_sigma"])
def PlanSlabs(dwi: File, bval: File, bvec: File, mask: File, config: dict, slab_size: int = 30,
              overlap: int = 5) -> tuple[list[int], float]:
    """Indices of the overlapping slabs that cover the mask along z, and the noise σ that all
    slab fits share."""
    data, acq, _ = load_series(dwi, bval, bvec)
    sigma = noise_sigma(data, acq, load_mask(mask), config)
    return [int(s.index) for s in plan(mask, slab_size, overlap)], sigma


@python_task(outputs=["part"])
def FitSlab(dwi: File, bval: File, bvec: File, mask: File, slab_index: int, config: dict,
            noise_sigma: float | None = None, slab_size: int = 30, overlap: int = 5,
            n_threads: int = 1, warm_start: str | None = None) -> File:
    """Fit PRISM on one slab; write the pickled partial fit ``slab-<index>.pkl``.

    Only the slab's slices are read from ``dwi`` (the series was validated by PrepareDwi and is
    stored uncompressed, so this is a memory-mapped read).
    """
    from prismflow.io import read_bval_bvec
    from prismflow.prism import fit_slab

    limit_threads(n_threads)
    img = nib.load(str(dwi))
    acq = read_bval_bvec(bval, bvec, n_volumes=img.shape[3], image_name=Path(dwi).name)
    mask_arr = load_mask(mask)
    slab = plan(mask, slab_size, overlap)[slab_index]
    cfg = prism_config(config)
    start = time.perf_counter()
    # overlap: on a CUDA out-of-memory error the core splits the slab and retries
    part = fit_slab(img.dataobj, acq, mask_arr, slab, cfg, noise_sigma=noise_sigma,
                    progress=False, overlap=overlap, warm_start=warm_start)
    logger.info("slab %d fitted in %.1f s", slab_index, time.perf_counter() - start)
    out = Path(f"slab-{slab_index:03d}.pkl").absolute()
    with open(out, "wb") as fh:
        pickle.dump({"fit": part, "seconds": time.perf_counter() - start}, fh)
    return out


@python_task(outputs=["maps", "peaks", "peaks_scanner", "info"])
def StitchSlabs(parts: list[File], dwi: File, mask: File, config: dict, slab_size: int = 30,
                overlap: int = 5) -> tuple[Directory, File, File, File]:
    """Blend the slab fits into whole-volume maps (``maps/<name>.nii.gz``) and peaks."""
    from prismflow.prism import stitch_slabs

    cfg = prism_config(config)
    slabs = plan(mask, slab_size, overlap)
    fits, seconds = [], 0.0
    for p in parts:
        with open(p, "rb") as fh:
            item = pickle.load(fh)
        fits.append(item["fit"])
        seconds += item["seconds"]
    mask_arr = load_mask(mask)
    fit = stitch_slabs(fits, slabs, mask_arr, overlap)
    affine = nib.load(str(dwi)).affine
    maps_dir = Path("maps").absolute()
    maps_dir.mkdir(exist_ok=True)
    fit.save(maps_dir, affine)
    # peaks for tracking, in the bvec (voxel) frame like every baseline's; the maps/ folder
    # holds PRISM's own scanner-frame (MRtrix3) peaks.nii.gz for the derivatives
    peaks = save_nifti_atomic(fit.volume(fit.peaks()).astype("float32"), affine,
                              Path("peaks_prism.nii.gz").absolute())
    scanner = Path("scanner_peaks_prism.nii.gz").absolute()
    shutil.copyfile(maps_dir / "peaks.nii.gz", scanner)
    info = Path("info.json").absolute()
    info.write_text(json.dumps({"method": "prism", "config": cfg.to_dict(), "n_slabs": len(slabs),
                                "seconds": seconds}, indent=2,
                               default=str))
    return maps_dir, peaks, scanner, info
