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


def write_tracking_sidecar(tractogram: Path, tracker: str, settings: dict, seed: int,
                           n_streamlines: int) -> Path:
    """``tracts_<method>.json`` beside the tractogram: tracker, every setting and the seed."""
    from prismflow.io.nifti import save_json_atomic

    side = tractogram.with_suffix(".json")
    save_json_atomic({"Tracker": tracker, "Seed": int(seed), "StreamlineCount": int(n_streamlines),
                      "TrackingSettings": settings}, side)
    return side


@python_task(outputs=["tractogram", "method"])
def TrackPeaks(peaks: File, mask: File, config: dict, seed: int = 0) -> tuple[File, str]:
    """Deterministic streamlines on a peaks file; writes ``tracts_<method>.trk`` (+ .json)."""
    from prismflow.tracking import TrackingConfig, save_trk, track_peaks

    dirs, amps, affine = load_peaks(peaks)
    names = TrackingConfig.__dataclass_fields__
    cfg = TrackingConfig(**{k: v for k, v in config.items() if k in names})
    sl = track_peaks(dirs, amps, load_mask(mask), affine, cfg, seed=seed)
    method = peaks_method(peaks)
    out = Path(f"tracts_{method}.trk").absolute()
    save_trk(sl, nib.load(str(mask)), out)
    write_tracking_sidecar(out, "dipy EuDX", cfg.to_dict(), seed, len(sl))
    return out, method


@python_task(outputs=["tractogram", "method"])
def TrackFixels(peaks: File, mask: File, config: dict, seed: int = 0) -> tuple[File, str]:
    """Deterministic fixel tracking (:func:`prismflow.tracking.fixels.track_fixels`) on a peaks
    file whose peak lengths are fibre fractions (PRISM's; a baseline's amplitudes are first
    divided by the 95th percentile of its voxel maxima in the mask, so one ``min_fraction``
    serves every source). Writes ``tracts_<method>.trk`` and its ``.json`` settings sidecar."""
    from prismflow.tracking import save_trk
    from prismflow.tracking.fixels import FixelTrackingConfig, track_fixels

    dirs, amps, affine = load_peaks(peaks)
    mask_arr = load_mask(mask)
    method = peaks_method(peaks)
    if method != "prism" and np.any(amps[mask_arr] > 0):
        vmax = amps[mask_arr].max(-1)
        amps = amps / np.percentile(vmax[vmax > 0], 95)
    names = FixelTrackingConfig.__dataclass_fields__
    cfg = FixelTrackingConfig(**{k: v for k, v in config.items() if k in names})
    sl = track_fixels(dirs, amps, mask_arr, affine, cfg, seed=seed)
    out = Path(f"tracts_{method}.trk").absolute()
    save_trk(sl, nib.load(str(mask)), out)
    write_tracking_sidecar(out, "prismflow fixel tracking (deterministic)", cfg.to_dict(), seed,
                           len(sl))
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
