"""The participant report's pieces on tiny files (seconds): streaming reads, shells, methods
text, sections of a real ``PrismFit.save`` output, the page and its errors section."""

from __future__ import annotations

import base64
import json

import nibabel as nib
import numpy as np
import pytest

from prismflow.io import Acquisition, write_bval_bvec
from prismflow.prism import PrismConfig
from prismflow.prism.result import PrismFit
from prismflow.reports.citations import REFERENCES, methods_text
from prismflow.reports.html import crash_reports_of, errors_section, render
from prismflow.reports.participant import (ParticipantInputs, build_sections, iter_volumes,
                                           shells)
from prismflow.reports.subject import write_subject_report


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_iter_volumes_matches_nibabel(tmp_path, ext):
    """Reference: nibabel's own scaled read of the whole image."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3000, size=(5, 4, 3, 6)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([2, 2, 2, 1]))
    img.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / f"x{ext}"
    nib.save(img, str(path))
    ref = nib.load(str(path)).get_fdata()
    vols = list(iter_volumes(path))
    assert len(vols) == 6
    np.testing.assert_allclose(np.stack(vols, -1), ref, rtol=1e-6)


def test_shells_groups_nearby_b_values():
    b = np.array([0, 5, 995, 1000, 1005, 2000, 1990, 0])
    centres, idx = shells(b)
    np.testing.assert_allclose(centres, [0, 1000, 2000], atol=10)
    assert list(idx) == [0, 0, 1, 1, 1, 2, 2, 0]


def test_methods_text_cites_only_what_ran():
    ver = {"prismflow": "1", "dipy": "1.12", "mrtrix3": "3.0.4"}
    steps = [{"action": "mask", "method": "median_otsu"}, {"action": "denoise"},
             {"action": "prism", "n_fibres": 3, "n_iter": 100, "loss": "mse"}]
    text, refs = methods_text(steps, versions=ver, seed=7, baselines_run=["mrtrix-msmt"],
                              tracked=[], connectome=False)
    keys = [r.key for r in refs]
    assert {"prism", "mppca", "msmt", "mrtrix3", "dipy", "pydra", "pybids"} <= set(keys)
    assert "degibbs" not in keys and "remidi" not in keys
    assert "seed 7" in text[0] and "Rprop" in " ".join(text)
    # every cited reference but PRISM's (a preprint) carries a DOI
    assert all(r.doi for r in refs if r.key != "prism")
    # the numbering follows first use: the first paragraph cites [1]
    assert "[1]" in text[0]
    text2, refs2 = methods_text([{"action": "mask", "method": "all"}], versions=ver, seed=0,
                                baselines_run=[], tracked=[], connectome=False)
    assert "prism" not in [r.key for r in refs2] and "mppca" not in [r.key for r in refs2]
    assert REFERENCES["dipy"].url == "https://doi.org/10.3389/fninf.2014.00008"


def _fake_series(tmp_path):
    """A 6×5×4 series with 2 shells and a real PrismFit.save() output of matching shape."""
    rng = np.random.default_rng(1)
    shape = (6, 5, 4)
    bvals = np.array([0, 0, 1000, 1000, 1000, 2000, 2000, 2000], float)
    dirs = rng.normal(size=(8, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs[bvals == 0] = 0
    acq = Acquisition(bvals, dirs)
    n = len(bvals)
    signal = 1000 * np.exp(-bvals * 1e-3)[None, None, None, :] * np.ones(shape + (n,))
    signal += rng.normal(0, 10, signal.shape)
    affine = np.diag([2.0, 2.0, 2.5, 1])
    nib.save(nib.Nifti1Image(signal.astype(np.float32), affine), str(tmp_path / "dwi.nii"))
    write_bval_bvec(acq, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    mask = np.ones(shape, bool)
    mask[0] = False
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(tmp_path / "mask.nii.gz"))
    v, k = int(mask.sum()), 3
    fr = rng.dirichlet(np.ones(3 + k), size=v)
    d = rng.normal(size=(v, k, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    pred = signal[mask].astype(np.float32) + rng.normal(0, 5, (v, n)).astype(np.float32)
    hist = list(np.geomspace(1.0, 0.01, 30))
    fit = PrismFit(mask=mask, s0=np.full(v, 1000.0), fractions=fr, directions=d,
                   f_in=np.full((v, k), 0.5), predicted=pred, bias=np.ones(v),
                   meas_scale=np.zeros((1, n)), meas_offset=np.zeros((1, n)),
                   sigma=np.array([0.01]), residual_rms=np.full(v, 5.0),
                   config=PrismConfig().to_dict(),
                   info={"slabs": [{"index": 0, "iterations": 30, "final_loss": 0.01,
                                    "loss_history": hist, "device": "cpu"}]})
    fit.save(tmp_path / "maps", affine)
    peaks = fit.volume(fit.peaks()).astype(np.float32)
    nib.save(nib.Nifti1Image(peaks, affine), str(tmp_path / "peaks_prism.nii.gz"))
    csd = np.zeros(shape + (9,), np.float32)
    csd[..., 0] = 1.0
    nib.save(nib.Nifti1Image(csd, affine), str(tmp_path / "peaks_dipy-csd.nii.gz"))
    (tmp_path / "info.json").write_text(json.dumps({"n_slabs": 1, "seconds": 3.0}))
    (tmp_path / "binfo.json").write_text(json.dumps({"method": "dipy-csd", "seconds": 1.0}))
    return ParticipantInputs(
        dwi=str(tmp_path / "dwi.nii"), bval=str(tmp_path / "dwi.bval"),
        bvec=str(tmp_path / "dwi.bvec"), mask=str(tmp_path / "mask.nii.gz"),
        recipe={"name": "t", "steps": [{"action": "prism", "n_fibres": 3, "n_iter": 30,
                                        "loss": "nll"}, {"action": "baseline"}]},
        seed=3, prism_maps=str(tmp_path / "maps"), prism_peaks=str(tmp_path / "peaks_prism.nii.gz"),
        prism_info=str(tmp_path / "info.json"),
        baseline_peaks=[str(tmp_path / "peaks_dipy-csd.nii.gz")],
        baseline_info=[str(tmp_path / "binfo.json")])


def test_sections_of_a_saved_fit(tmp_path):
    sections = build_sections(_fake_series(tmp_path), mosaic_slices=3)
    ids = [s["id"] for s in sections]
    assert ids == ["summary", "mask", "tissue", "nfibres", "dec", "crossings", "quality",
                   "methods"]
    for s in sections:
        assert s["caption"] and s["title"]
    summary = dict(map(tuple, sections[0]["items"][0]["rows"]))
    assert summary["shells (b in s/mm²: directions)"] == "0: 2, 1000: 3, 2000: 3"
    assert summary["voxel size"] == "2.00 × 2.00 × 2.50 mm"
    assert summary["PRISM device actually used"] == "cpu" and summary["seed"] == "3"
    imgs = [it for s in sections for it in s["items"] if it["kind"] == "img"]
    assert len(imgs) >= 15
    for it in imgs:          # every figure is a decodable PNG
        raw = base64.b64decode(it["uri"].split(",", 1)[1])
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 1000
    quality = sections[ids.index("quality")]
    assert any(it["alt"] == "loss per slab" for it in quality["items"] if it["kind"] == "img")
    sigma_rows = [it for it in quality["items"] if it["kind"] == "table"][0]["rows"]
    assert sigma_rows[0][1] == "0.01"
    # the crossing caption reports the angle between PRISM's and the CSD main peaks
    assert "dipy-csd" in sections[ids.index("crossings")]["caption"]


def test_page_escapes_text_and_lists_crash_reports(tmp_path):
    log = tmp_path / "sub-01" / "log" / "run1"
    log.mkdir(parents=True)
    (log / "crash-fit_slab-0.txt").write_text("Traceback\nValueError: <bad>\n")
    crashes = crash_reports_of(log)
    assert [c.name for c in crashes] == ["crash-fit_slab-0.txt"]
    sec = errors_section(crashes, "run1")
    assert sec["klass"] == "errors-found" and sec["items"][0]["title"].endswith(".txt")
    html = render("t", "s", [{"name": None, "sections": [
        {"id": "x", "title": "<b>x</b>", "caption": "c", "items": []}, sec]}])
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "ValueError: &lt;bad&gt;" in html
    assert str(crashes[0]) in html
    page = write_subject_report(tmp_path / "sub-01.html", "01", [("sub-01_dwi", None)],
                                run={"run_id": "run1", "command": "prismflow …"},
                                crash_reports=crashes, error="ValueError: boom")
    text = page.read_text()
    assert "did not finish" in text and "ValueError: boom" in text and "run1" in text


def test_model_section_reports_what_was_estimated(tmp_path):
    """The PRISM config recorded in info.json reaches the report: each diffusivity with its
    source, the f_in rule and the evidence test's counts."""
    from prismflow.prism.response import DiffusivityEstimate
    from prismflow.prism.config import Diffusivities

    inputs = _fake_series(tmp_path)
    est = DiffusivityEstimate(Diffusivities(axial=1.56e-3, radial=0.49e-3),
                              {"axial": "data (72 single-fibre voxels, 2 refinement rounds)",
                               "radial": "data (72 single-fibre voxels, 2 refinement rounds)",
                               "csf": "constant (only 0 CSF-like voxels)"})
    cfg = PrismConfig().replace(diffusivities=est.diffusivities, diffusivity_source=est.summary())
    (tmp_path / "info.json").write_text(json.dumps({
        "n_slabs": 1, "seconds": 3.0, "config": cfg.to_dict(),
        "selection": {"tested": [120, 9], "removed": [70, 1], "pooling": {"gained_fibres": 4}},
        "single_shell": None}))
    sections = build_sections(inputs, mosaic_slices=3)
    ids = [s["id"] for s in sections]
    assert ids[:4] == ["summary", "mask", "model", "tissue"]
    rows = dict(map(tuple, sections[2]["items"][0]["rows"]))
    assert rows["fibre D∥ (10⁻³ mm²/s)"] == "1.56 — data (72 single-fibre voxels, 2 refinement rounds)"
    assert rows["fibre D⊥ (zeppelin) (10⁻³ mm²/s)"].startswith("0.49 — data")
    assert rows["csf (10⁻³ mm²/s)"] == "3 — constant (only 0 CSF-like voxels)"
    assert rows["intra-axonal fraction f_in"] == "one per voxel, shared by its fibres"
    assert "BIC" in rows["fibres"] and "15°" in rows["fibres"]
    assert rows["evidence test"].startswith("voxels tested per round 120, 9; fewer fibres chosen 70, 1")
    assert "pooling 4" in rows["evidence test"]


def test_only_section_hides_every_other_section_and_refuses_an_unknown_one():
    from prismflow.reports.browser import only_section

    page = ("<html><head><title>r</title></head><body><header>h</header>"
            '<section id="summary">a</section><section id="model">b</section></body></html>')
    shown = only_section(page, "model")
    assert "section:not(#model){display:none !important}" in shown
    assert shown.index("<style>") < shown.index("</head>")       # applies before the body renders
    assert shown.replace(shown[shown.index("<style>"):shown.index("</style>") + 8], "") == page
    with pytest.raises(ValueError, match="no section 'fit'"):
        only_section(page, "fit")
