"""The command line: help quality, and one clear line + non-zero exit for bad invocations."""

from __future__ import annotations

from pathlib import Path

import pytest

from prismflow.cli.parser import build_parser
from prismflow.cli.run import main


def test_help_has_groups_units_defaults_examples():
    text = " ".join(build_parser().format_help().split())
    for section in ("selecting data", "what to run", "execution", "examples:", "references:"):
        assert section in text
    assert "in voxels" in text and "(default: cf)" in text and "--participant-label" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "prismflow" in capsys.readouterr().out


def test_help_recipes(capsys):
    """Every recipe file in the source tree's workflows/recipes/ is listed (there must be some:
    an empty listing fails), with each action of its steps."""
    import yaml

    shipped = sorted((Path(__file__).resolve().parents[2] / "workflows" / "recipes").glob("*.yaml"))
    assert main(["--help-recipes"]) == 0
    out = capsys.readouterr().out
    assert len(shipped) >= 3
    for f in shipped:
        recipe = yaml.safe_load(f.read_text())
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f.stem + " "))
        assert recipe["description"][:30] in line, f.stem
        assert all(step["action"] in out for step in recipe["steps"])


def _one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("prismflow: error:") and match in err, err


def test_missing_bids_dir(capsys, tmp_path):
    _one_line_error(capsys, [str(tmp_path / "nope"), str(tmp_path / "out"), "participant"],
                    "BIDS directory not found")


def test_not_a_bids_dir(capsys, tmp_path):
    _one_line_error(capsys, [str(tmp_path), str(tmp_path.parent / "o1"), "participant"],
                    "not a BIDS dataset")


def test_unknown_participant(capsys, synthetic_bids, tmp_path):
    _one_line_error(capsys, [str(synthetic_bids), str(tmp_path / "out"), "participant",
                             "--participant-label", "sub-99", "--skip-bids-validation",
                             "-w", str(tmp_path / "w")], "99 not found")


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_unwritable_output(capsys, synthetic_bids, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = _tree(tmp_path)
    _one_line_error(capsys, [str(synthetic_bids), str(blocker / "out"), "participant"],
                    "is a file, not a directory")
    _one_line_error(capsys, [str(synthetic_bids), str(blocker), "participant"],
                    "exists and is not a directory")
    assert _tree(tmp_path) == before                      # nothing left behind


def test_output_may_not_be_the_dataset_root_or_a_subject_folder(capsys, synthetic_bids):
    before = _tree(synthetic_bids)
    _one_line_error(capsys, [str(synthetic_bids), str(synthetic_bids), "participant"],
                    "input dataset's root")
    _one_line_error(capsys, [str(synthetic_bids), str(synthetic_bids / "sub-01" / "out"),
                             "participant"], "must not be inside the subject folder")
    assert _tree(synthetic_bids) == before


@pytest.mark.parametrize("argv_tail, match", [
    (["--recipe", "nosuch"], "recipe 'nosuch' not found"),
    (["--participant-label", "99"], "99 not found"),
    (["--participant-label", "0-1"], "invalid label"),
])
def test_argument_error_leaves_nothing_behind(capsys, synthetic_bids, tmp_path, argv_tail, match):
    """No empty output directory, no sibling work directory (the default -w)."""
    out = tmp_path / "new" / "prismflow"
    _one_line_error(capsys, [str(synthetic_bids), str(out), "participant",
                             "--skip-bids-validation", *argv_tail], match)
    assert list(tmp_path.iterdir()) == []


def test_default_work_dir_is_documented():
    text = " ".join(build_parser().format_help().split())
    assert "<output_dir>/../prismflow_work" in text


def test_missing_positionals(capsys):
    _one_line_error(capsys, [], "missing bids_dir")


def test_bad_recipe(capsys, synthetic_bids, tmp_path):
    _one_line_error(capsys, [str(synthetic_bids), str(tmp_path / "out"), "participant",
                             "--recipe", "nosuch", "--skip-bids-validation",
                             "-w", str(tmp_path / "w")], "recipe 'nosuch' not found")


def test_group_without_participant_outputs(capsys, synthetic_bids, tmp_path):
    _one_line_error(capsys, [str(synthetic_bids), str(tmp_path / "out"), "group",
                             "-w", str(tmp_path / "w")], "run the participant level first")


def test_cuda_without_gpu(capsys, synthetic_bids, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    _one_line_error(capsys, [str(synthetic_bids), str(tmp_path / "out"), "participant",
                             "--device", "cuda", "--skip-bids-validation",
                             "-w", str(tmp_path / "w")], "no CUDA device")


def test_gradient_table_mismatch_caught_up_front(capsys, make_examples, tmp_path):
    root = make_examples.make_synthetic(tmp_path / "ds", n_subjects=1)
    bval = (root / "dwi.bval").read_text().split()
    (root / "dwi.bval").write_text(" ".join(bval[:-1]) + "\n")
    _one_line_error(capsys, [str(root), str(tmp_path / "out"), "participant",
                             "--skip-bids-validation", "-w", str(tmp_path / "w")],
                    "dwi.bvec lists 63 directions but")
