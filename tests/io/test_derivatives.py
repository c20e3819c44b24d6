"""Derivative names from our pattern file, dataset_description, .bidsignore, safe copies."""

from __future__ import annotations

import json

import pytest

from prismflow.io import InputError
from prismflow.io.derivatives import (
    check_output_dir, derivative_path, init_derivatives, map_sidecar, write_derivative)


@pytest.mark.parametrize("ents, expected", [
    (dict(subject="01", space="dwi", model="prism", param="tissue_fractions", suffix="dwimap",
          extension=".nii.gz"),
     "sub-01/dwi/sub-01_space-dwi_model-prism_param-tissuefractions_dwimap.nii.gz"),
    (dict(subject="01", session="pre", run="2", space="dwi", desc="brain", suffix="mask",
          extension=".nii.gz"),
     "sub-01/ses-pre/dwi/sub-01_ses-pre_run-2_space-dwi_desc-brain_mask.nii.gz"),
    (dict(subject="01", space="dwi", model="dipy-csd", param="peaks", suffix="dwimap",
          extension=".json"),
     "sub-01/dwi/sub-01_space-dwi_model-dipycsd_param-peaks_dwimap.json"),
    (dict(subject="01", space="dwi", model="prism", desc="det", suffix="streamlines",
          extension=".trk"),
     "sub-01/dwi/sub-01_space-dwi_model-prism_desc-det_streamlines.trk"),
    (dict(subject="01", space="dwi", model="prism", segmentation="bundles", suffix="connectome",
          extension=".csv"),
     "sub-01/dwi/sub-01_space-dwi_model-prism_seg-bundles_connectome.csv"),
])
def test_derivative_names(ents, expected):
    assert derivative_path(ents) == expected


def test_unknown_suffix_is_a_programming_error():
    with pytest.raises(ValueError, match="no derivative pattern"):
        derivative_path(dict(subject="01", suffix="bold", extension=".nii.gz"))


def test_dataset_description_and_bidsignore(tmp_path, monkeypatch):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "demo"}))
    monkeypatch.setenv("PRISMFLOW_CONTAINER_TAG", "prismflow/prismflow:0.1.0-cpu")
    out = tmp_path / "out"
    out.mkdir()
    init_derivatives(out, bids)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "prismflow" and gen["Version"]
    assert gen["Container"]["Tag"] == "prismflow/prismflow:0.1.0-cpu"
    ignore = (out / ".bidsignore").read_text().split()
    assert "*_dwimap.nii.gz" in ignore and "/group" in ignore


def test_output_dir_checks(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    with pytest.raises(InputError, match="inside the input"):
        check_output_dir(bids / "derivatives" / "x", bids.resolve())
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="not a directory|cannot create"):
        check_output_dir(tmp_path / "afile", bids.resolve())
    with pytest.raises(InputError, match="cannot create"):
        check_output_dir(tmp_path / "afile" / "out", bids.resolve())
    assert check_output_dir(tmp_path / "new" / "out", bids.resolve()).is_dir()


def test_write_derivative_never_overwrites_silently(tmp_path):
    src = tmp_path / "a.nii.gz"
    src.write_bytes(b"one")
    ents = dict(subject="01", space="dwi", desc="brain", suffix="mask", extension=".nii.gz")
    out = tmp_path / "out"
    dst = write_derivative(src, out, ents, {"Type": "Brain"})
    assert dst.read_bytes() == b"one"
    assert json.loads(dst.with_name(dst.name.replace(".nii.gz", ".json")).read_text())["Type"] == "Brain"
    write_derivative(src, out, ents, None)                   # same content: fine
    src.write_bytes(b"two")
    with pytest.raises(InputError, match="--overwrite"):
        write_derivative(src, out, ents, None)
    write_derivative(src, out, ents, None, overwrite=True)
    assert dst.read_bytes() == b"two"


def test_map_sidecar_units_and_provenance():
    side = map_sidecar("peaks", "prism", seed=3, sources=["bids:raw:sub-01/dwi/x.nii.gz"])
    assert side["Units"] and side["Seed"] == 3 and side["SoftwareVersion"]
    assert "scanner" in side["Description"]
