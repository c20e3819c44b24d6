"""--worker slurm against a real Slurm (opt-in: ``pytest -m slurm``; start one with
``tests/engine/start_local_slurm.sh``). Skipped when ``sbatch`` is absent."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from prismflow.engine import EngineConfig
from prismflow.engine.selftest import run_selftest

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(shutil.which("sbatch") is None, reason="Slurm (sbatch) not installed"),
]


def _slurm_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_selftest_on_slurm(tmp_path):
    if not _slurm_up():
        pytest.skip("Slurm installed but not running (tests/engine/start_local_slurm.sh)")
    out = run_selftest(EngineConfig(worker="slurm", cache_root=str(tmp_path)), n=3)
    assert out.squares == [0, 1, 4]
    assert out.total == 5
    ids = subprocess.run(["sacct", "-n", "-X", "-o", "JobName%40,State"], capture_output=True,
                         text=True).stdout
    assert "square" in ids and "COMPLETED" in ids


def test_participant_mask_step_on_slurm(tmp_path, monkeypatch):
    """The BIDS app itself with --worker slurm (a mask-only recipe keeps it quick)."""
    if not _slurm_up():
        pytest.skip("Slurm installed but not running (tests/engine/start_local_slurm.sh)")
    import importlib.util
    from pathlib import Path

    from prismflow.cli.run import main

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  repo / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bids = mod.make_synthetic(tmp_path / "bids", n_subjects=1)
    recipe = tmp_path / "mask.yaml"
    recipe.write_text("name: mask\ndescription: mask only\nsteps:\n  - {action: mask, method: all}\n")
    out = tmp_path / "out"
    rc = main([str(bids), str(out), "participant", "--worker", "slurm", "--recipe", str(recipe),
               "-w", str(tmp_path / "work"), "--skip-bids-validation"])
    assert rc == 0
    assert (out / "sub-01" / "dwi" / "sub-01_space-dwi_desc-brain_mask.nii.gz").is_file()
