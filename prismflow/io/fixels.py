"""PRISM fixels as an MRtrix3 fixel directory (for fixel2voxel, fixelcorrespondence, fixelcfestats).

The MRtrix3 fixel directory format (``mrtrix.readthedocs.io``, "Fixel directory format"):

- ``index.nii``: 4-D (X, Y, Z, 2) uint32 image; frame 0 = number of fixels in the voxel, frame 1
  = index of its first fixel in the fixel data files;
- ``directions.nii``: (F, 3, 1) float32 unit directions in scanner (real-world) coordinates;
- one file per fixel-data quantity, (F, 1, 1): here ``fraction.nii`` (fibre volume fraction),
  ``f_in.nii`` (intra-axonal fraction), ``confidence.nii`` (curvature of the loss w.r.t. the
  direction, rad⁻²) and ``angular_sd.nii`` (degrees), when given.

MRtrix3 accepts NIfTI-1 for every file of a fixel directory. Fixels of a voxel are contiguous
and voxels are numbered in MRtrix3's own loop order (x fastest), as ``fod2fixel`` writes them.

Axis letters: V voxels of the mask (C order), K fibres, F fixels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ..prism.fixels import bvec_frame_to_world

#: fixel data files written from a PrismFit, with their sidecar descriptions
DATA_DESCRIPTIONS = {
    "fraction": "fibre volume fraction of the fixel, unitless",
    "f_in": "intra-axonal (stick) fraction of the fixel, unitless",
    "confidence": "curvature of the PRISM loss w.r.t. the fixel direction (Gauss-Newton, "
                  "smaller eigenvalue), rad^-2; higher = better determined",
    "angular_sd": "direction standard deviation implied by the curvature, degrees",
}


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(data, affine), str(path))


def write_fixel_directory(out_dir, mask: np.ndarray, directions: np.ndarray,
                          present: np.ndarray, affine: np.ndarray, data: dict[str, np.ndarray],
                          *, sidecar: dict | None = None) -> Path:
    """Write a fixel directory atomically (built in a sibling temporary folder, then renamed).

    Parameters
    ----------
    mask : (X, Y, Z) bool, V True voxels (C order).
    directions : (V, K, 3) unit directions in the bvec frame (converted to scanner space).
    present : (V, K) bool — which fibres are fixels.
    affine : (4, 4) voxel → scanner mm of the image.
    data : name → (V, K) per-fibre values, each written as ``<name>.nii``.
    sidecar : extra JSON written as ``fixels.json`` (settings, provenance).
    """
    out_dir = Path(out_dir)
    mask = np.asarray(mask, bool)
    vox = np.argwhere(mask)                                    # C order, rows match V
    # MRtrix3 loops x fastest: order voxels by (z, y, x)
    order = np.lexsort((vox[:, 0], vox[:, 1], vox[:, 2]))
    present = np.asarray(present, bool)[order]
    counts = present.sum(1).astype(np.uint32)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.uint32)
    index = np.zeros(mask.shape + (2,), np.uint32)
    v = vox[order]
    index[v[:, 0], v[:, 1], v[:, 2], 0] = counts
    index[v[:, 0], v[:, 1], v[:, 2], 1] = np.where(counts > 0, offsets, 0)
    world = bvec_frame_to_world(np.asarray(directions, np.float64)[order], affine)
    world /= np.maximum(np.linalg.norm(world, axis=-1, keepdims=True), 1e-12)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _save(index, affine, tmp / "index.nii")
        # data files get an identity transform: with a rotated image affine MRtrix3 would
        # permute their (F, 3, 1) axes to approximate RAS and misread them
        _save(world[present].astype(np.float32)[:, :, None], np.eye(4), tmp / "directions.nii")
        for name, values in data.items():
            vals = np.asarray(values, np.float64)[order][present].astype(np.float32)
            _save(vals[:, None, None], np.eye(4), tmp / f"{name}.nii")
        meta = {"Description": "MRtrix3 fixel directory written by prismflow",
                "DirectionsFrame": "scanner (real-world) coordinates, as MRtrix3",
                "Data": {k: DATA_DESCRIPTIONS.get(k, "") for k in data}, **(sidecar or {})}
        (tmp / "fixels.json").write_text(json.dumps(meta, indent=1, default=str))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def write_prism_fixels(fit, acq, affine: np.ndarray, out_dir, *,
                       sidecar: dict | None = None) -> Path:
    """A :class:`~prismflow.prism.PrismFit`'s present fibres as a fixel directory with
    fraction, f_in, confidence and angular_sd data files."""
    from ..prism.uncertainty import fixel_uncertainty

    unc = fixel_uncertainty(fit, acq)
    data = {"fraction": fit.fibre_fractions, "f_in": fit.f_in, "confidence": unc.curvature,
            "angular_sd": np.minimum(unc.angular_sd_deg, 90.0)}
    return write_fixel_directory(out_dir, fit.mask, fit.directions, fit.present(), affine, data,
                                 sidecar=sidecar)


def read_fixel_directory(path) -> dict:
    """Read a fixel directory back: ``index`` (X, Y, Z, 2), ``directions`` (F, 3) in scanner
    space, ``affine``, and every other ``<name>.nii``/``.mif`` data file as (F,) arrays
    (``.mif`` through MRtrix3's ``mrconvert``)."""
    path = Path(path)

    def load(p: Path) -> tuple[np.ndarray, np.ndarray]:
        if p.suffix == ".mif":
            import subprocess

            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run(["mrconvert", "-quiet", str(p), f"{tmp}/x.nii"], check=True)
                img = nib.load(f"{tmp}/x.nii")
                return np.asarray(img.dataobj).copy(), img.affine
        img = nib.load(str(p))
        return np.asarray(img.dataobj), img.affine

    def find(stem):
        for ext in (".nii", ".nii.gz", ".mif"):
            if (path / f"{stem}{ext}").exists():
                return path / f"{stem}{ext}"
        raise FileNotFoundError(f"{path}: no {stem}.nii/.mif")

    index, affine = load(find("index"))
    dirs, _ = load(find("directions"))
    out = {"index": index.astype(np.int64), "directions": dirs.reshape(dirs.shape[0], 3),
           "affine": affine}
    for p in sorted(path.iterdir()):
        stem = p.name.split(".")[0]
        if stem in ("index", "directions") or p.suffix not in (".nii", ".gz", ".mif"):
            continue
        arr, _ = load(p)
        out[stem] = arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim > 1 else arr
    return out
