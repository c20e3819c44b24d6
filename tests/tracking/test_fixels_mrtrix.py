"""PRISM fixels as an MRtrix3 fixel directory: read back by MRtrix3's own fixel commands.

Independent checks: MRtrix3 3.0.3 (``fixel2voxel``, ``fixelcorrespondence``,
``fixelconnectivity``, ``fixelcfestats``) parses the directory, and its voxel maps agree with
PRISM's NIfTI outputs (fibre fractions, fibre count, peaks image).
"""

from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from prismflow.io.fixels import read_fixel_directory, write_prism_fixels

pytestmark = [pytest.mark.mrtrix,
              pytest.mark.skipif(shutil.which("fixel2voxel") is None, reason="MRtrix3 not installed")]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from prismflow.phantoms.connectivity import make_connectivity_phantom
    from prismflow.prism import PrismConfig, fit_volume

    ph = make_connectivity_phantom("small", seed=0, snr=50)
    c = np.argwhere(ph.wm_mask).mean(0).astype(int)
    sl = tuple(slice(max(0, x - 4), x + 4) for x in c)
    dwi, mask = ph.dwi[sl], ph.mask[sl]
    # a rotated, shifted grid (det > 0) exercises the bvec -> scanner frame conversion
    affine = np.array([[0, -1.0, 0, 10], [1.0, 0, 0, -5], [0, 0, 1.0, 3], [0, 0, 0, 1]])
    cfg = PrismConfig.for_volume().replace(n_iter=60, device="cpu")
    fit = fit_volume(dwi, ph.acquisition, mask, cfg, workers=1, progress=False)
    out = tmp_path_factory.mktemp("fx")
    fdir = write_prism_fixels(fit, ph.acquisition, affine, out / "fixels")
    return fit, affine, fdir, ph.acquisition, out


def _run(*args, cwd=None):
    import os

    subprocess.run(list(args) + ["-quiet", "-force", "-nthreads", "1"], check=True, cwd=cwd,
                   env=dict(os.environ, MRTRIX_QUIET="1"))


def test_peaks_and_fixels_agree(fitted):
    fit, affine, fdir, _, _ = fitted
    fx = read_fixel_directory(fdir)
    peaks = fit.maps(affine)["peaks"]                        # (X, Y, Z, 3K) scanner frame
    assert fx["directions"].shape[0] == int(fit.present().sum()) > 0
    for v in np.argwhere(fit.mask):
        n, off = fx["index"][tuple(v)]
        p = peaks[tuple(v)].reshape(-1, 3)
        p = p[np.linalg.norm(p, axis=1) > 0]
        assert n == len(p)
        got = fx["directions"][off:off + n] * fx["fraction"][off:off + n, None]
        for a, b in zip(got, p):                                # same order (fraction-sorted)
            assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-5
    assert np.all(fx["confidence"] > 0) and np.all(fx["angular_sd"] > 0)


def test_fixel2voxel_reads_the_directory(fitted, tmp_path):
    fit, affine, fdir, _, _ = fitted
    _run("fixel2voxel", str(fdir / "fraction.nii"), "sum", str(tmp_path / "sum.nii"))
    _run("fixel2voxel", str(fdir / "fraction.nii"), "count", str(tmp_path / "count.nii"))
    total = np.asarray(nib.load(tmp_path / "sum.nii").dataobj)
    count = np.asarray(nib.load(tmp_path / "count.nii").dataobj)
    maps = fit.maps(affine)
    present = fit.present()
    np.testing.assert_allclose(total[fit.mask], (fit.fibre_fractions * present).sum(1), atol=1e-5)
    np.testing.assert_array_equal(count[fit.mask], maps["n_fibres"][fit.mask])


def test_fixelcorrespondence_and_fixelcfestats(fitted, tmp_path):
    from prismflow.tracking.fixels import FixelTrackingConfig, track_fixels

    fit, affine, fdir, _, _ = fitted
    tmpl = tmp_path / "template"
    shutil.copytree(fdir, tmpl)
    _run("fixelcorrespondence", str(fdir / "fraction.nii"), str(tmpl), str(tmp_path / "corr"), "fd.nii")
    back = np.asarray(nib.load(tmp_path / "corr" / "fd.nii").dataobj).ravel()
    np.testing.assert_allclose(back, read_fixel_directory(fdir)["fraction"], atol=1e-6)

    # tracks from the same fixels give the fixel-fixel connectivity
    present = fit.present()
    dirs = fit.volume(fit.directions * present[..., None])
    amps = fit.volume(fit.fibre_fractions * present)
    sl = track_fixels(dirs, amps, fit.mask, affine, FixelTrackingConfig(seeds_per_voxel=4,
                                                                        min_length_mm=2.0))
    assert len(sl) > 20
    tck = nib.streamlines.Tractogram(sl, affine_to_rasmm=np.eye(4))
    nib.streamlines.save(tck, str(tmp_path / "t.tck"))
    _run("fixelconnectivity", str(tmpl), str(tmp_path / "t.tck"), str(tmp_path / "matrix"))
    rng = np.random.default_rng(0)
    frac = read_fixel_directory(tmpl)["fraction"]
    names = []
    for i in range(6):
        name = f"s{i}.nii"
        vals = frac * (1.0 + 0.05 * rng.standard_normal(frac.shape)) + (0.05 if i < 3 else 0.0)
        nib.save(nib.Nifti1Image(vals.astype(np.float32)[:, None, None], np.eye(4)), tmpl / name)
        names.append(name)
    (tmp_path / "subjects.txt").write_text("\n".join(names) + "\n")
    np.savetxt(tmp_path / "design.txt", [[1, 1]] * 3 + [[1, 0]] * 3, fmt="%d")
    np.savetxt(tmp_path / "contrast.txt", [[0, 1]], fmt="%d")
    _run("fixelcfestats", str(tmpl), str(tmp_path / "subjects.txt"), str(tmp_path / "design.txt"),
         str(tmp_path / "contrast.txt"), str(tmp_path / "matrix"), str(tmp_path / "stats"),
         "-nshuffles", "20")
    out = sorted(p.name for p in (tmp_path / "stats").iterdir())
    assert any(n.startswith("fwe_1mpvalue") for n in out), out
    t = read_fixel_directory(tmp_path / "stats")
    tvals = [v for k, v in t.items() if k.startswith("tvalue")][0]
    assert tvals.shape == frac.shape and np.nanmean(tvals) > 0   # group 1 was raised by 0.05
