"""Preprocessing tasks: checked input copy, brain mask (dipy), MRtrix3 denoise/degibbs (nipype)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from fileformats.generic import File
from ._define import python_task

from prismflow.io import save_nifti_atomic

from ._common import load_series

logger = logging.getLogger(__name__)


def brain_mask(data: np.ndarray, b0: np.ndarray, *, method: str = "median_otsu",
               median_radius_vox: int = 4, numpass: int = 4) -> np.ndarray:
    """(X, Y, Z) bool brain mask from the mean b=0 image.

    ``method``: ``"median_otsu"`` (dipy) or ``"all"`` (every voxel with signal, for phantoms).
    """
    mean_b0 = data[..., b0].mean(axis=-1) if b0.any() else data.mean(axis=-1)
    if method == "all":
        return mean_b0 > 0
    if method != "median_otsu":
        raise ValueError(f"unknown mask method {method!r}")
    from dipy.segment.mask import median_otsu

    _, mask = median_otsu(mean_b0, median_radius=median_radius_vox, numpass=numpass)
    return mask.astype(bool)


@python_task(outputs=["dwi", "bval", "bvec", "mask"])
def PrepareDwi(in_dwi: File, in_bval: File, in_bvec: File, mask_method: str = "median_otsu",
               median_radius_vox: int = 4, numpass: int = 4) -> tuple[File, File, File, File]:
    """Validate the series against its gradient table; write float32 data, the bval/bvec files
    as given (every reader cleans them the same way on reading, so a fit here sees exactly the
    acquisition that ``prismflow-fit`` sees on the original files) and a brain mask."""
    data, acq, affine = load_series(in_dwi, in_bval, in_bvec)
    mask = brain_mask(data, acq.b0_mask, method=mask_method,
                      median_radius_vox=median_radius_vox, numpass=numpass)
    # uncompressed, so that each slab job reads only its slices (memory map)
    dwi = save_nifti_atomic(data, affine, Path("dwi.nii").absolute())
    shutil.copyfile(in_bval, "dwi.bval")
    shutil.copyfile(in_bvec, "dwi.bvec")
    m = save_nifti_atomic(mask.astype(np.uint8), affine, Path("mask.nii.gz").absolute())
    logger.info("%s: %d voxels in the brain mask", Path(in_dwi).name, int(mask.sum()))
    return dwi, Path("dwi.bval").absolute(), Path("dwi.bvec").absolute(), m


@python_task(outputs=["dwi"])
def Denoise(in_dwi: File, mask: File) -> File:
    """MRtrix3 ``dwidenoise`` (MP-PCA) through nipype."""
    from nipype.interfaces.mrtrix3 import DWIDenoise

    DWIDenoise(in_file=str(in_dwi), mask=str(mask), out_file="denoised.nii.gz",
               noise="noise.nii.gz", nthreads=1, args="-quiet").run()
    return Path("denoised.nii.gz").absolute()


@python_task(outputs=["dwi"])
def Degibbs(in_dwi: File) -> File:
    """MRtrix3 ``mrdegibbs`` (Gibbs-ringing removal) through nipype."""
    from nipype.interfaces.mrtrix3 import MRDeGibbs

    MRDeGibbs(in_file=str(in_dwi), out_file="degibbs.nii.gz", nthreads=1, args="-quiet").run()
    return Path("degibbs.nii.gz").absolute()
