"""The workflow's default tracker task: fixel tracking on a peaks file, settings and seed recorded."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from prismflow.phantoms.bids_phantom import make_bundle_phantom
from prismflow.tracking import connectome, load_trk


def _inputs(tmp_path):
    ph = make_bundle_phantom(snr=np.inf)
    peaks = tmp_path / "peaks_prism.nii.gz"
    vec = ph.directions * ph.fibre_fractions[..., None]
    nib.save(nib.Nifti1Image(vec.reshape(ph.dseg.shape + (-1,)).astype(np.float32), ph.affine), peaks)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((ph.tissue[..., 0] < 0.5).astype(np.uint8), ph.affine), mask)
    return ph, peaks, mask


def test_track_fixels_task_records_settings_and_seed(tmp_path):
    from prismflow.tasks.tracking import TrackFixels
    from prismflow.workflows.recipes import SCHEMA

    assert SCHEMA["tracking"]["tracker"].default == "fixel"
    ph, peaks, mask = _inputs(tmp_path)
    cfg = {"step_mm": 0.5, "angle_deg": 45.0, "seeds_per_voxel": 1, "min_length_mm": 4.0,
           "max_length_mm": 250.0, "peak_threshold": 0.1, "min_fraction": 0.1}
    outs = {}
    for seed in (0, 1):
        res = TrackFixels(peaks=peaks, mask=mask, config=cfg, seed=seed)(cache_root=tmp_path / f"c{seed}")
        assert res.method == "prism"
        side = json.loads(Path(str(res.tractogram)).with_suffix(".json").read_text())
        assert side["Seed"] == seed and side["TrackingSettings"]["min_fraction"] == 0.1
        assert side["Tracker"].startswith("prismflow fixel")
        sl = load_trk(str(res.tractogram), reference=nib.load(mask))
        matrix, _ = connectome(sl, ph.dseg, ph.affine)
        assert matrix[0, 1] > 50 and matrix[2, 3] > 50 and matrix[:2, 2:].sum() == 0
        outs[seed] = np.concatenate(sl)
    assert outs[0].shape != outs[1].shape or not np.allclose(outs[0], outs[1])
