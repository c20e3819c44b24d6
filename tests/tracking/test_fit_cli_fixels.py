"""prismflow-fit writes an MRtrix3 fixel directory beside its maps; peaks and fixels agree."""

from __future__ import annotations

import numpy as np
import nibabel as nib

from prismflow.cli.fit import main
from prismflow.io import write_bval_bvec
from prismflow.io.fixels import read_fixel_directory


def test_fit_writes_fixels_matching_the_peaks(tmp_path):
    from prismflow.phantoms.crossing import make_crossing_phantom

    ph = make_crossing_phantom(snr=30, angles_deg=(60,), n_per_angle=12, n_single=12, seed=2)
    dwi = ph.signal.reshape(4, 3, 2, -1).astype(np.float32)
    nib.save(nib.Nifti1Image(dwi, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "dwi.nii.gz")
    write_bval_bvec(ph.acquisition, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    base = [str(tmp_path / "dwi.nii.gz"), "--bval", str(tmp_path / "dwi.bval"), "--bvec",
            str(tmp_path / "dwi.bvec"), "--iters", "30", "-q"]
    assert main(base + ["--out", str(tmp_path / "out")]) == 0
    fx = read_fixel_directory(tmp_path / "out" / "fixels")
    peaks = np.asarray(nib.load(tmp_path / "out" / "peaks.nii.gz").dataobj)
    n = fx["index"][..., 0]
    assert n.sum() == fx["directions"].shape[0] > 0
    for v in np.argwhere(n > 0):
        cnt, off = fx["index"][tuple(v)]
        p = peaks[tuple(v)].reshape(-1, 3)
        p = p[np.linalg.norm(p, axis=1) > 0]
        got = fx["directions"][off:off + cnt] * fx["fraction"][off:off + cnt, None]
        np.testing.assert_allclose(np.abs(got), np.abs(p), atol=1e-5)
    assert np.all(fx["angular_sd"] > 0) and np.all(fx["confidence"] > 0)
    assert main(base + ["--out", str(tmp_path / "out2"), "--no-fixels"]) == 0
    assert not (tmp_path / "out2" / "fixels").exists()
