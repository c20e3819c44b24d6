"""Group level from derivatives alone: tidy rows, TSV and figures."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from prismflow.reports.group import entities, plot_metrics, subject_metrics, write_table


def _save(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), str(path))
    return path


def _fake_subject(root, sub):
    d = root / f"sub-{sub}" / "dwi"
    pre = f"sub-{sub}_space-dwi"
    mask = np.ones((3, 3, 2))
    _save(d / f"{pre}_desc-brain_mask.nii.gz", mask)
    prism = np.zeros((3, 3, 2, 9))
    prism[..., 0] = 0.6                       # fibre 1 along x
    prism[:, 0, :, 4] = 0.4                   # fibre 2 along y in one row
    _save(d / f"{pre}_model-prism_param-peaks_dwimap.nii.gz", prism)
    (d / f"{pre}_model-prism_param-peaks_dwimap.json").write_text(json.dumps({"FitSeconds": 2.0}))
    csd = np.zeros((3, 3, 2, 9))
    csd[..., 1] = 1.0                         # along y: 90 degrees from PRISM's first peak
    _save(d / f"{pre}_model-dipycsd_param-peaks_dwimap.nii.gz", csd)
    tissue = np.zeros((3, 3, 2, 4))
    tissue[..., 3] = 0.7
    _save(d / f"{pre}_model-prism_param-tissuefractions_dwimap.nii.gz", tissue)
    (d / f"{pre}_model-prism_desc-det_streamlines.json").write_text(
        json.dumps({"StreamlineCount": 42}))
    (d / f"{pre}_model-prism_seg-x_connectome.csv").write_text("label,1,2\n1,0,5\n2,5,0\n")
    return sorted(str(p) for p in d.iterdir())


def test_entities():
    e = entities("sub-01_ses-a_space-dwi_model-prism_param-peaks_dwimap.nii.gz")
    assert e == {"sub": "01", "ses": "a", "space": "dwi", "model": "prism", "param": "peaks",
                 "suffix": "dwimap"}


def test_subject_metrics_table_and_figures(tmp_path):
    rows = subject_metrics(_fake_subject(tmp_path, "01")) + subject_metrics(
        _fake_subject(tmp_path, "02"))
    df = pd.DataFrame(rows)
    get = lambda m, k: df[(df.method == m) & (df.metric == k)].value.to_numpy()  # noqa: E731
    np.testing.assert_allclose(get("prism", "crossing_fraction"), [1 / 3, 1 / 3])
    np.testing.assert_allclose(get("prism", "mean_peaks_per_voxel"), [4 / 3, 4 / 3])
    np.testing.assert_allclose(get("prism", "mean_wm_fraction"), [0.7, 0.7], rtol=1e-6)
    np.testing.assert_allclose(get("prism", "fit_seconds"), [2.0, 2.0])
    np.testing.assert_allclose(get("prism", "streamline_count"), [42, 42])
    np.testing.assert_allclose(get("prism", "connectome_total"), [5, 5])
    np.testing.assert_allclose(get("dipycsd", "first_peak_angle_to_prism_deg"), [90, 90])
    table = write_table(rows, tmp_path / "t.tsv")
    back = pd.read_csv(table, sep="\t", dtype={"subject": str})
    assert list(back.columns) == ["subject", "session", "method", "metric", "value"]
    assert set(back.subject) == {"01", "02"}
    figs = plot_metrics(table, tmp_path / "figs")
    assert len(figs) == back.metric.nunique() and all(p.stat().st_size > 0 for p in figs)
