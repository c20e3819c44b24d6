"""Tractography and connectome tasks (any peaks file, PRISM's or a baseline's)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from fileformats.generic import File
from ._define import python_task

from ._common import load_mask, load_peaks


def peaks_method(peaks_path) -> str:
    """``[scanner_]peaks_<method>.nii.gz`` → ``<method>``."""
    name = Path(peaks_path).name.removeprefix("scanner_")
    return name[len("peaks_"):].split(".nii")[0]


def tractogram_method(path) -> str:
    """``tracts_<method>.trk|.tck`` → ``<method>``."""
    return Path(path).name[len("tracts_"):].rsplit(".", 1)[0]


def streamline_count(path) -> int:
    """Number of streamlines from a ``.trk``/``.tck`` header (no points loaded)."""
    hdr = nib.streamlines.load(str(path), lazy_load=True).header
    return int(hdr.get("nb_streamlines", hdr.get("count", 0)))


@python_task(outputs=["tractogram", "method"])
def TrackPeaks(peaks: File, mask: File, config: dict, seed: int = 0) -> tuple[File, str]:
    """Deterministic streamlines on a peaks file; writes ``tracts_<method>.trk``."""
    from prismflow.tracking import TrackingConfig, save_trk, track_peaks

    dirs, amps, affine = load_peaks(peaks)
    cfg = TrackingConfig(**config)
    sl = track_peaks(dirs, amps, load_mask(mask), affine, cfg, seed=seed)
    method = peaks_method(peaks)
    out = Path(f"tracts_{method}.trk").absolute()
    save_trk(sl, nib.load(str(mask)), out)
    Path("tracking.json").write_text(json.dumps({"n_streamlines": len(sl), **cfg.to_dict()}))
    return out, method


@python_task(outputs=["tractogram", "method"])
def TrackPeaksMrtrix(peaks: File, mask: File, config: dict, seed: int = 0) -> tuple[File, str]:
    """MRtrix3 ``tckgen -algorithm FACT`` on a scanner-frame peaks file (through nipype);
    writes ``tracts_<method>.tck``. Seeds on a regular grid in every mask voxel."""
    import os

    from nipype.interfaces.mrtrix3 import Tractography

    os.environ["MRTRIX_RNG_SEED"] = str(seed)
    method = peaks_method(peaks)
    out = Path(f"tracts_{method}.tck").absolute()
    grid = max(1, int(round(config["seeds_per_voxel"] ** (1 / 3))))
    Tractography(in_file=str(peaks), out_file=str(out), algorithm="FACT",
                 seed_grid_voxel=(str(mask), grid), roi_mask=str(mask),
                 step_size=config["step_mm"], angle=config["angle_deg"],
                 min_length=config["min_length_mm"], max_length=config["max_length_mm"],
                 select=0, nthreads=1, args="-quiet -force").run()
    return out, method


@python_task(outputs=["peaks"])
def SelectPeaks(sources: list, prism: File | None = None, baselines: list | None = None) -> list:
    """The peaks files of the requested ``sources`` (``prism`` and/or baseline names)."""
    files = ([prism] if prism is not None else []) + list(baselines or [])
    by_method = {peaks_method(f): f for f in files}
    return [by_method[s] for s in sources if s in by_method]


@python_task(outputs=["connectome"])
def BuildConnectome(tractogram: File, dseg: File) -> File:
    """Streamline-count connectome between the labels of ``dseg``: ``connectome_<method>.csv``."""
    from prismflow.tracking import connectome, load_trk, save_connectome_csv

    method = tractogram_method(tractogram)

    img = nib.load(str(dseg))
    sl = load_trk(tractogram, reference=img)
    matrix, labels = connectome(sl, np.asarray(img.dataobj), img.affine)
    out = Path(f"connectome_{method}.csv").absolute()
    save_connectome_csv(matrix, labels, out)
    return out
