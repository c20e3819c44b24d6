"""BIDS input: dataset checks, label handling, one pybids index, inheritance, parcellations."""

from __future__ import annotations

import json

import pytest

from prismflow.io import InputError
from prismflow.io.bids import check_bids_dir, collect_inputs, normalise_labels, open_layout


def test_check_bids_dir_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        check_bids_dir(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        check_bids_dir(tmp_path / "file")
    with pytest.raises(InputError, match="no dataset_description.json"):
        check_bids_dir(tmp_path)
    (tmp_path / "dataset_description.json").write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        check_bids_dir(tmp_path)


def test_labels_with_or_without_prefix():
    assert normalise_labels(["sub-01", "02"]) == ["01", "02"]
    assert normalise_labels(["ses-pre"], prefix="ses-") == ["pre"]
    assert normalise_labels(None) == []
    with pytest.raises(InputError, match="alphanumeric"):
        normalise_labels(["sub-01_x"])


def test_collect_inputs_resolves_inheritance_and_dseg(synthetic_bids, tmp_path):
    layout = open_layout(synthetic_bids, tmp_path, ["02"])
    assert layout.get_subjects() == ["02"]                   # sub-01 not even indexed
    (dwi,) = collect_inputs(layout, ["02"])
    assert dwi.subject == "02" and dwi.session is None
    assert dwi.bval.endswith("synthetic/dwi.bval")            # top-level file, inherited
    assert dwi.metadata["PhaseEncodingDirection"] == "j-"     # top-level sidecar, inherited
    assert dwi.dseg.endswith("sub-02_space-dwi_desc-bundles_dseg.nii.gz")
    assert dwi.name == "sub-02"


def test_layout_database_is_reused(synthetic_bids, tmp_path):
    open_layout(synthetic_bids, tmp_path, ["01"])
    dbs = list(tmp_path.glob("bids_db_*"))
    assert len(dbs) == 1
    open_layout(synthetic_bids, tmp_path, ["01"])
    assert list(tmp_path.glob("bids_db_*")) == dbs


def test_unknown_participant_lists_available(synthetic_bids, tmp_path):
    layout = open_layout(synthetic_bids, tmp_path, ["07"])
    with pytest.raises(InputError, match=r"07 not found .*available: 01, 02"):
        collect_inputs(layout, ["07"])


def test_atlas_overrides_dseg(synthetic_bids, tmp_path):
    atlas = tmp_path / "atlas.nii.gz"
    atlas.write_bytes(b"")
    layout = open_layout(synthetic_bids, tmp_path, ["01"])
    (dwi,) = collect_inputs(layout, ["01"], atlas=atlas)
    assert dwi.dseg == str(atlas)


def test_missing_gradients_named(tmp_path, make_examples):
    root = make_examples.make_synthetic(tmp_path / "ds", n_subjects=1)
    (root / "dwi.bval").unlink()
    layout = open_layout(root, tmp_path, ["01"])
    with pytest.raises(InputError, match="no .bval/.bvec"):
        collect_inputs(layout, ["01"])


def test_synthetic_dataset_passes_validator(synthetic_bids):
    import shutil
    import subprocess

    exe = shutil.which("bids-validator-deno")
    if exe is None:
        pytest.skip("bids-validator-deno not installed")
    proc = subprocess.run([exe, "--json", str(synthetic_bids)], capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    assert proc.returncode == 0, [i for i in issues if i["severity"] == "error"]


def test_requested_participant_without_dwi(tmp_path, make_examples):
    root = make_examples.make_synthetic(tmp_path / "ds", n_subjects=2)
    anat = root / "sub-02" / "anat"
    anat.mkdir()
    (root / "sub-02" / "dwi" / "sub-02_dwi.nii.gz").rename(anat / "sub-02_T1w.nii.gz")
    layout = open_layout(root, tmp_path / "db1", ["01", "02"])
    with pytest.raises(InputError, match="02 have no DWI series"):
        collect_inputs(layout, ["01", "02"])
    layout = open_layout(root, tmp_path / "db2", None)
    assert [d.subject for d in collect_inputs(layout)] == ["01"]   # all: skip with a warning
