"""prismflow-fit: outputs, sidecars, and one-line errors that leave nothing behind."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from prismflow.cli.fit import main
from prismflow.io import write_bval_bvec


@pytest.fixture
def dataset(tmp_path):
    from prismflow.phantoms.crossing import make_crossing_phantom

    ph = make_crossing_phantom(snr=30, angles_deg=(90,), n_per_angle=24, n_single=24, seed=2)
    dwi = ph.signal.reshape(4, 4, 3, -1).astype(np.float32)
    nib.save(nib.Nifti1Image(dwi, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "dwi.nii.gz")
    write_bval_bvec(ph.acquisition, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    return tmp_path, ph


def _args(d, out, *extra):
    return [str(d / "dwi.nii.gz"), "--bval", str(d / "dwi.bval"), "--bvec", str(d / "dwi.bvec"),
            "--out", str(out), "--iters", "40", "-q", *extra]


def test_writes_all_maps_with_sidecars(dataset):
    d, ph = dataset
    assert main(_args(d, d / "out", "--slab-size", "2", "--slab-overlap", "1")) == 0
    out = d / "out"
    for name in ("tissue_fractions", "fibre_directions", "fibre_fractions", "peaks", "n_fibres",
                 "f_in", "s0", "bias_field", "residual_rms", "predicted"):
        assert (out / f"{name}.nii.gz").is_file(), name
        side = json.loads((out / f"{name}.json").read_text())
        assert side["Config"]["n_fibres"] == 3 and side["Config"]["seed"] == 0
    peaks = nib.load(out / "peaks.nii.gz")
    assert peaks.shape == (4, 4, 3, 9)
    tissue = nib.load(out / "tissue_fractions.nii.gz").get_fdata()
    np.testing.assert_allclose(tissue.sum(-1), 1.0, atol=1e-5)
    assert json.loads((out / "calibration.json").read_text())["meas_log_scale"]
    assert not [p for p in d.iterdir() if p.name.startswith(".out.")]  # no temp dir left


@pytest.mark.skipif(shutil.which("mrinfo") is None, reason="MRtrix3 not installed")
@pytest.mark.parametrize("flip", [1.0, -1.0])
def test_peaks_image_is_in_scanner_frame(dataset, flip):
    """The CLI's peaks.nii.gz holds the fitted bvec-frame directions (fibre_directions.nii.gz)
    in MRtrix3's scanner frame: checked against MRtrix3's own conversion of those directions,
    given as an FSL bvec file (``mrinfo -export_grad_mrtrix``), for an oblique affine with a
    positive and with a negative determinant."""
    d, ph = dataset
    rot = np.array([[np.cos(0.5), -np.sin(0.5), 0], [np.sin(0.5), np.cos(0.5), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.0 * flip, 2.0, 2.0])
    img = nib.load(d / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), d / "dwi.nii.gz")
    assert main(_args(d, d / "out")) == 0
    peaks = np.asarray(nib.load(d / "out" / "peaks.nii.gz").dataobj, np.float64)
    dirs = np.asarray(nib.load(d / "out" / "fibre_directions.nii.gz").dataobj, np.float64)
    vec = peaks.reshape(-1, 3)
    ours = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    bvec = dirs.reshape(-1, 3)
    present = np.linalg.norm(bvec, axis=1) > 0.5
    assert present.sum() > 10
    # MRtrix3 converts FSL bvecs of an image to scanner coordinates on import
    n = int(present.sum())
    np.savetxt(d / "f.bvec", bvec[present].T, fmt="%.9f")
    np.savetxt(d / "f.bval", np.full((1, n), 1000.0), fmt="%g")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, n), np.float32), affine), d / "f.nii")
    subprocess.run(["mrinfo", str(d / "f.nii"), "-fslgrad", str(d / "f.bvec"), str(d / "f.bval"),
                    "-export_grad_mrtrix", str(d / "f.b"), "-quiet"], check=True)
    theirs = np.loadtxt(d / "f.b", comments="#")[:, :3]
    cos = np.abs(np.einsum("vd,vd->v", ours[present], theirs))
    assert cos.min() > 1 - 1e-5


def _run_cli(args):
    return subprocess.run([sys.executable, "-m", "prismflow.cli.fit", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", ["count_mismatch", "three_d", "nan", "missing"])
def test_bad_input_gives_one_line_and_writes_nothing(dataset, case):
    d, _ = dataset
    if case == "count_mismatch":
        bvals = np.loadtxt(d / "dwi.bval")
        np.savetxt(d / "dwi.bval", bvals[None, :-1], fmt="%g")
    elif case == "three_d":
        img = nib.load(d / "dwi.nii.gz")
        nib.save(nib.Nifti1Image(img.get_fdata()[..., 0], img.affine), d / "dwi.nii.gz")
    elif case == "nan":
        img = nib.load(d / "dwi.nii.gz")
        data = img.get_fdata()
        data[1, 1, 1, 3] = np.nan
        nib.save(nib.Nifti1Image(data.astype(np.float32), img.affine), d / "dwi.nii.gz")
    else:
        (d / "dwi.bvec").unlink()
    proc = _run_cli(_args(d, d / "out"))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("prismflow-fit: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (d / "out").exists()


def test_refuses_to_overwrite_without_force(dataset):
    d, _ = dataset
    (d / "out").mkdir()
    (d / "out" / "keep.txt").write_text("x")
    proc = _run_cli(_args(d, d / "out"))
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (d / "out" / "keep.txt").read_text() == "x"
