"""PRISM tasks: plan slabs, fit one slab (split over slabs), stitch the parts (combine).

The parts travel between processes as pickled :class:`prismflow.prism.PrismFit` objects; the
stitched fit is written as one NIfTI per map into ``maps/`` and as a peaks file.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import nibabel as nib
from fileformats.generic import Directory, File
from pydra.compose import python

from ._common import limit_threads, load_mask, load_series, save_peaks

logger = logging.getLogger(__name__)


def plan(mask_path, slab_size: int, overlap: int):
    """The slab plan of ``mask_path`` (deterministic, so each task can recompute it)."""
    from prismflow.prism import plan_slabs

    mask = load_mask(mask_path)
    return plan_slabs(mask.shape, mask, slab_size=slab_size, overlap=overlap)


def prism_config(config: dict):
    """A :class:`prismflow.prism.PrismConfig` from a (recipe) dict."""
    from prismflow.prism import PrismConfig

    return PrismConfig.from_dict(config) if hasattr(PrismConfig, "from_dict") else PrismConfig(**config)


@python.define(outputs=["slab_indices"])
def PlanSlabs(mask: File, slab_size: int = 30, overlap: int = 5) -> list[int]:
    """Indices of the overlapping slabs that cover the mask along z."""
    return [int(s.index) for s in plan(mask, slab_size, overlap)]


@python.define(outputs=["part"])
def FitSlab(dwi: File, bval: File, bvec: File, mask: File, slab_index: int, config: dict,
            slab_size: int = 30, overlap: int = 5, n_threads: int = 1) -> File:
    """Fit PRISM on one slab; write the pickled partial fit ``slab-<index>.pkl``."""
    from prismflow.prism import fit_slab

    limit_threads(n_threads)
    data, acq, _ = load_series(dwi, bval, bvec)
    mask_arr = load_mask(mask)
    slab = plan(mask, slab_size, overlap)[slab_index]
    start = time.perf_counter()
    part = fit_slab(data, acq, mask_arr, slab, prism_config(config))
    logger.info("slab %d fitted in %.1f s", slab_index, time.perf_counter() - start)
    out = Path(f"slab-{slab_index:03d}.pkl").absolute()
    with open(out, "wb") as fh:
        pickle.dump(part, fh)
    return out


@python.define(outputs=["maps", "peaks", "info"])
def StitchSlabs(parts: list[File], dwi: File, mask: File, config: dict, slab_size: int = 30,
                overlap: int = 5) -> tuple[Directory, File, File]:
    """Blend the slab fits into whole-volume maps (``maps/<name>.nii.gz``) and peaks."""
    from prismflow.prism import stitch_slabs

    cfg = prism_config(config)
    slabs = plan(mask, slab_size, overlap)
    fits = []
    for p in parts:
        with open(p, "rb") as fh:
            fits.append(pickle.load(fh))
    mask_arr = load_mask(mask)
    fit = stitch_slabs(fits, slabs, mask_arr.shape, cfg)
    affine = nib.load(str(dwi)).affine
    maps_dir = Path("maps").absolute()
    maps_dir.mkdir(exist_ok=True)
    fit.save(maps_dir, affine)
    peaks = save_peaks(*_peaks_of(fit, cfg), affine, "peaks_prism.nii.gz")
    info = Path("info.json").absolute()
    info.write_text(json.dumps({"config": cfg.to_dict(), "n_slabs": len(slabs)}, indent=2,
                               default=str))
    return maps_dir, peaks, info


def _peaks_of(fit, cfg):
    """Fibre directions (X, Y, Z, K, 3) and fractions (X, Y, Z, K) of a PRISM fit, with fibres
    below the reporting threshold set to zero."""
    import numpy as np

    maps = fit.maps()
    dirs = np.asarray(maps.get("fibre_directions", maps.get("directions")))
    frac = np.asarray(maps.get("fibre_fractions", maps.get("fractions_fibre")))
    largest = frac.max(axis=-1, keepdims=True)
    keep = (frac >= cfg.min_fibre_fraction) & (frac >= cfg.relative_fibre_fraction * largest)
    return dirs * keep[..., None], frac * keep
