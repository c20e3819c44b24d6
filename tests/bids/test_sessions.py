"""Datasets with sessions: selection with --session-id, ses- in every derivative name."""

from __future__ import annotations

import shutil

import pytest

from prismflow.cli.run import main
from prismflow.io.bids import collect_inputs, open_layout


@pytest.fixture()
def session_bids(tmp_path, make_examples):
    root = make_examples.make_synthetic(tmp_path / "ses_ds", n_subjects=1)
    src = root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    for ses in ("a", "b"):
        d = root / "sub-01" / f"ses-{ses}" / "dwi"
        d.mkdir(parents=True)
        shutil.copy(src, d / f"sub-01_ses-{ses}_dwi.nii.gz")
    shutil.rmtree(root / "sub-01" / "dwi")
    return root


def test_session_selection(session_bids, tmp_path):
    layout = open_layout(session_bids, tmp_path / "db", ["01"])
    assert [d.session for d in collect_inputs(layout, ["01"])] == ["a", "b"]
    (only,) = collect_inputs(layout, ["01"], ["b"])
    assert only.session == "b" and only.name == "sub-01_ses-b"


def test_cli_writes_session_derivatives(session_bids, tmp_path):
    recipe = tmp_path / "mask.yaml"
    recipe.write_text("name: mask\ndescription: mask only\nsteps:\n  - {action: mask, method: all}\n")
    out = tmp_path / "out"
    rc = main([str(session_bids), str(out), "participant", "--session-id", "ses-a",
               "--recipe", str(recipe), "-w", str(tmp_path / "w"), "--skip-bids-validation",
               "--worker", "debug"])
    assert rc == 0
    assert (out / "sub-01/ses-a/dwi/sub-01_ses-a_space-dwi_desc-brain_mask.nii.gz").is_file()
    assert not (out / "sub-01/ses-b").exists()
    assert list((out / "sub-01/ses-a/log").glob("*/sub-01_ses-a_prismflow.json"))
