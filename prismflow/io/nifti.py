"""NIfTI reading with validation, and atomic writing (never a half-written file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError


def load_image(path: str | Path, *, ndim: int | tuple[int, ...] | None = None,
               allow_nan: bool = False) -> nib.Nifti1Image:
    """Load a NIfTI image, checking that it exists, is readable and has the expected rank.

    Parameters
    ----------
    path : the ``.nii``/``.nii.gz`` file.
    ndim : accepted numbers of dimensions (e.g. 4 for a DWI series).
    allow_nan : when False, NaN or inf voxels raise :class:`InputError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({type(err).__name__}: {err})") from err
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if img.ndim not in accepted:
            want = " or ".join(f"{d}-D" for d in accepted)
            raise InputError(f"{path}: expected a {want} image, got {img.ndim}-D with shape "
                             f"{img.shape}" + ("; a DWI series must be 4-D (x, y, z, volumes)"
                                               if 4 in accepted else ""))
    if not allow_nan:
        data = np.asanyarray(img.dataobj)
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputError(f"{path}: {n_bad} voxel values are NaN or inf; "
                             "replace them (e.g. with 0) or exclude them from the mask")
        # the check has read (and decompressed) everything: hand back an in-memory image so
        # that callers reading ``dataobj`` do not read the file a second time
        img = nib.Nifti1Image(data, img.affine, img.header)
    return img


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def save_nifti_atomic(data: np.ndarray, affine: np.ndarray, path: str | Path,
                      header: nib.Nifti1Header | None = None) -> Path:
    """Write ``data`` as NIfTI to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        img = nib.Nifti1Image(np.asarray(data), affine, header=header)
        # nibabel picks compression from the suffix, so save under a matching temporary name.
        tmp_named = tmp.with_name(tmp.name + ("".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else ".nii"))
        nib.save(img, str(tmp_named))
        os.chmod(tmp_named, os.stat(tmp).st_mode & 0o777)
        os.replace(tmp_named, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_json_atomic(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
