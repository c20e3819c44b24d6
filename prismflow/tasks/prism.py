"""PRISM tasks: one-line wrappers of :mod:`prismflow.prism.volume` (plan → fit slab → stitch).

The plan travels between tasks as JSON (``plan.json``), the slab fits as pickled
:class:`prismflow.prism.PrismFit` objects; the stitched fit is written as one NIfTI per map into
``maps/`` (by :meth:`PrismFit.save`, as ``prismflow-fit`` writes them) and as peaks files.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import nibabel as nib
from fileformats.generic import Directory, File

from prismflow.io import save_nifti_atomic

from ._common import limit_threads, load_mask, load_series
from ._define import python_task

logger = logging.getLogger(__name__)


def prism_config(config: dict):
    """The :class:`prismflow.prism.PrismConfig` for image volumes (``PrismConfig.for_volume``:
    spatial priors and calibration on) with the recipe's ``config`` changes applied."""
    from prismflow.prism import PrismConfig

    return PrismConfig.for_volume(**config)


def volume_config(volume: dict):
    """The :class:`prismflow.prism.VolumeConfig` with the given fields (``None`` = default)."""
    from prismflow.prism import VolumeConfig

    return VolumeConfig().with_changes(**volume)


def read_plan(path):
    """The :class:`prismflow.prism.VolumePlan` saved by :class:`PlanVolume`."""
    from prismflow.prism import VolumePlan

    return VolumePlan.from_dict(json.loads(Path(path).read_text()))


def read_parts(paths) -> list:
    """The slab fits pickled by :class:`FitSlab`, in the given order."""
    parts = []
    for p in paths:
        with open(p, "rb") as fh:
            parts.append(pickle.load(fh))
    return parts


@python_task(outputs=["plan", "slab_indices"])
def PlanVolume(dwi: File, bval: File, bvec: File, mask: File, config: dict,
               volume: dict) -> tuple[File, list[int]]:
    """:func:`prismflow.prism.plan_volume`; writes ``plan.json`` and lists the slab indices."""
    from prismflow.prism import plan_volume

    data, acq, _ = load_series(dwi, bval, bvec)
    plan = plan_volume(data, acq, load_mask(mask), prism_config(config), volume_config(volume))
    out = Path("plan.json").absolute()
    out.write_text(json.dumps(plan.to_dict(), indent=2))
    return out, list(range(len(plan.slabs)))


@python_task(outputs=["part"])
def FitSlab(dwi: File, bval: File, bvec: File, mask: File, plan: File, slab_index: int,
            n_threads: int = 1) -> File:
    """:func:`prismflow.prism.fit_planned_slab` on one slab; writes ``slab-<index>.pkl``.

    Only the slab's slices are read from ``dwi`` (stored uncompressed by PrepareDwi: a
    memory-mapped read).
    """
    from prismflow.io import read_bval_bvec
    from prismflow.prism import fit_planned_slab

    limit_threads(n_threads)
    img = nib.load(str(dwi))
    acq = read_bval_bvec(bval, bvec, n_volumes=img.shape[3], image_name=Path(dwi).name)
    part = fit_planned_slab(read_plan(plan), img.dataobj, acq, load_mask(mask), slab_index)
    out = Path(f"slab-{slab_index:03d}.pkl").absolute()
    with open(out, "wb") as fh:
        pickle.dump(part, fh)
    return out


@python_task(outputs=["maps", "peaks", "peaks_scanner", "info"])
def StitchVolume(parts: list[File], plan: File, dwi: File, bval: File | None = None,
                 bvec: File | None = None) -> tuple[Directory, File, File, File]:
    """:func:`prismflow.prism.stitch_volume`; writes ``maps/<name>.nii.gz`` (+ sidecars), the
    peaks in the bvec frame (``peaks_prism.nii.gz``, for tracking) and in the scanner frame
    (``scanner_peaks_prism.nii.gz``), and ``info.json`` (the plan and the run facts); with
    ``bval``/``bvec``, also the MRtrix3 fixel directory ``maps/fixels``."""
    from prismflow.prism import stitch_volume

    fit = stitch_volume(read_plan(plan), read_parts(parts))
    affine = nib.load(str(dwi)).affine
    maps_dir = Path("maps").absolute()
    written = fit.save(maps_dir, affine)
    if bval is not None and bvec is not None:   # maps/fixels: MRtrix3 fixel directory
        from prismflow.io.fixels import write_prism_fixels
        from prismflow.io.gradients import read_bval_bvec

        acq = read_bval_bvec(str(bval), str(bvec), n_volumes=nib.load(str(dwi)).shape[3])
        write_prism_fixels(fit, acq, affine, maps_dir / "fixels")
    peaks = save_nifti_atomic(fit.volume(fit.peaks()).astype("float32"), affine,
                              Path("peaks_prism.nii.gz").absolute())
    scanner = Path("scanner_peaks_prism.nii.gz").absolute()
    shutil.copyfile(written["peaks"], scanner)
    info = Path("info.json").absolute()
    info.write_text(json.dumps({"method": "prism", "config": fit.config, "seconds": fit.info["seconds"],
                                "n_slabs": len(fit.info["slabs"]), "seed": fit.info["seed"],
                                "device": fit.info["device"], "plan": fit.info["plan"],
                                "selection": fit.info.get("selection"),
                                "single_shell": fit.info.get("single_shell")},
                               indent=2, default=str))
    return maps_dir, peaks, scanner, info
