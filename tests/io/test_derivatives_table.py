"""Every output of a participant run gets its BIDS name, description and unit from the one table,
and each unit is the right one — checked against the values in the file it describes (a map in
"volume fraction" lies in [0, 1], a residual in data units is on the scale of the input, unit
vectors have norm 1), not against the table itself."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from prismflow.io.derivatives import OUTPUTS, PEAK_AMPLITUDE, publish, stage_participant


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A real (tiny) PRISM fit, a baseline peaks file, a tractogram and a connectome, staged."""
    from prismflow.phantoms.crossing import make_crossing_phantom
    from prismflow.prism import PrismConfig, fit_volume
    from prismflow.tracking import save_connectome_csv
    from prismflow.tracking.streamlines import save_trk

    tmp = tmp_path_factory.mktemp("sink")
    shape = (4, 3, 4)
    n = int(np.prod(shape))
    ph = make_crossing_phantom(snr=30, n_per_angle=n // 2, n_single=n - 2 * (n // 2), seed=1,
                               angles_deg=(60, 90), n_dirs=20, n_b0=3)
    dwi = (1000.0 * ph.signal[:n]).reshape(shape + (-1,)).astype(np.float32)   # a.u., b0 ≫ 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(dwi, affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp / "sub-01_dwi.nii.gz")
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), affine)       # no units: the sink sets them
    nib.save(mask, tmp / "mask.nii.gz")
    fit = fit_volume(dwi, ph.acquisition, None, PrismConfig.for_volume(n_iter=5), workers=1,
                     progress=False)
    fit.save(tmp / "maps", affine)
    (tmp / "info.json").write_text(json.dumps({"config": fit.config, "seconds": 1.0,
                                               "device": fit.info["device"], "n_slabs": 1}))
    peaks = np.zeros(shape + (9,), np.float32)
    peaks[..., 0] = 0.7                                            # an FOD amplitude, a.u.
    nib.save(nib.Nifti1Image(peaks, affine), tmp / "scanner_peaks_dipy-csd.nii.gz")
    (tmp / "info_dipy.json").write_text(json.dumps({"method": "dipy-csd", "seconds": 0.1}))
    save_trk([np.array([[0.0, 0, 0], [2, 0, 0], [4, 0, 0]])], mask, tmp / "tracts_prism.trk")
    save_connectome_csv(np.array([[0, 3], [3, 0]]), np.array([1, 2]), tmp / "connectome_prism.csv")
    out = tmp / "derivatives"
    files = stage_participant(
        out, series={"entities": {"subject": "01"}, "sources": ["bids:raw:sub-01/dwi/x.nii.gz"],
                     "parcellation": "bids:raw:derivatives/atlas/sub-01_desc-bundles_dseg.nii.gz",
                     "segmentation": "bundles"},
        seed=3, recipe={"steps": [{"action": "tracking", "step_mm": 0.5}]},
        dwi=tmp / "sub-01_dwi.nii.gz", mask=tmp / "mask.nii.gz", prism_maps=tmp / "maps",
        prism_info=tmp / "info.json", baseline_peaks=[tmp / "scanner_peaks_dipy-csd.nii.gz"],
        baseline_info=[tmp / "info_dipy.json"], tractograms=[tmp / "tracts_prism.trk"],
        connectomes=[tmp / "connectome_prism.csv"])
    return out, files, dwi, fit


def _sidecar(path: Path) -> dict:
    return json.loads(Path(str(path).split(".nii")[0].rsplit(".", 1)[0] + ".json").read_text()
                      if ".nii" in path.name else path.with_suffix(".json").read_text())


def test_every_output_kind_is_staged_with_a_sidecar(staged):
    out, files, _, _ = staged
    # 10 PRISM maps + mask + baseline peaks + streamlines + connectome
    assert len(files) == 14
    suffixes = {f.name.split("_")[-1].split(".")[0] for f in files}
    assert suffixes == {"mask", "dwimap", "streamlines", "connectome"}
    for f in files:
        side = _sidecar(f)
        assert side["Description"] and side["Units"], f.name
        assert "see Description" not in side["Units"]


def test_units_agree_with_the_values(staged):
    out, files, dwi, fit = staged
    by_name = {f.name: f for f in files}

    def load(param, model="prism"):
        f = by_name[f"sub-01_space-dwi_model-{model}_param-{param}_dwimap.nii.gz"]
        return np.asarray(nib.load(f).dataobj, dtype=np.float64), _sidecar(f)["Units"]

    for param in ("tissuefractions", "fibrefractions", "fin"):
        values, unit = load(param)
        assert "fraction (0-1)" in unit and values.min() >= 0 and values.max() <= 1 + 1e-6, param
    dirs, unit = load("fibredirections")
    norms = np.linalg.norm(dirs.reshape(-1, 3), axis=1)
    assert unit.startswith("unitless") and np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    counts, unit = load("nfibres")
    assert unit == "count" and np.array_equal(counts, np.round(counts)) and counts.max() <= 3
    # residual and S0 are in the input's units (here ~1000 a.u.), not a fraction
    for param in ("residualrms", "s0", "predicted"):
        values, unit = load(param)
        assert unit.startswith("data units"), param
    s0, _ = load("s0")
    b0 = dwi.max(-1)                                     # ≈ the b=0 signal of each voxel
    assert 0.6 < np.median(s0[s0 > 0]) / np.median(b0) < 1.2
    rms, _ = load("residualrms")
    assert 1.0 < rms.max() < 0.5 * dwi.max()            # data units: far above 1 ("fraction")
    # peaks: PRISM's length is a volume fraction, dipy-CSD's an FOD amplitude
    prism_peaks, prism_unit = load("peaks")
    csd_peaks, csd_unit = load("peaks", "dipycsd")
    assert prism_unit == PEAK_AMPLITUDE["prism"] and csd_unit == PEAK_AMPLITUDE["dipy-csd"]
    assert prism_unit != csd_unit
    lengths = np.linalg.norm(prism_peaks.reshape(-1, 3), axis=1)
    assert lengths.max() <= 1 + 1e-6
    bias, unit = load("biasfield")
    assert unit.startswith("unitless") and 0.5 < bias[bias > 0].mean() < 2


def test_nifti_space_and_time_units_are_kept(staged):
    out, files, _, _ = staged
    for f in files:
        if f.name.endswith(".nii.gz"):
            assert nib.load(f).header.get_xyzt_units() == ("mm", "sec"), f.name


def test_mask_and_connectome_sidecars(staged):
    out, files, _, _ = staged
    mask = next(f for f in files if f.name.endswith("_mask.nii.gz"))
    side = _sidecar(mask)
    assert "brain mask" in side["Description"] and side["Type"] == "Brain"
    csv = next(f for f in files if f.name.endswith("_connectome.csv"))
    side = _sidecar(csv)
    assert side["Parcellation"].startswith("bids:") and not Path(side["Parcellation"]).is_absolute()
    assert side["Units"] == "streamline count"
    trk = next(f for f in files if f.name.endswith(".trk"))
    assert _sidecar(trk)["StreamlineCount"] == 1 and _sidecar(trk)["Seed"] == 3 and "Seed" not in _sidecar(csv)


def test_table_covers_every_prism_map(staged):
    _, _, _, fit = staged
    assert set(fit.maps()) <= set(OUTPUTS)
    methods = ("dipy-csd", "dipy-msmt", "mrtrix-csd", "mrtrix-msmt", "force", "odffp")
    from prismflow.baselines import METHOD_NAMES

    assert set(METHOD_NAMES) <= set(PEAK_AMPLITUDE) and set(methods) <= set(PEAK_AMPLITUDE)


def test_publish_never_overwrites_silently(staged, tmp_path):
    from prismflow.io import InputError

    out, files, _, _ = staged
    dest = tmp_path / "out"
    assert len(publish(out, dest)) == len(files)
    assert len(publish(out, dest)) == len(files)          # same content: a rerun is fine
    victim = dest / files[0].relative_to(out)
    victim.write_bytes(b"changed")
    with pytest.raises(InputError, match="--overwrite"):
        publish(out, dest)
    publish(out, dest, overwrite=True)
    assert victim.read_bytes() == files[0].read_bytes()
