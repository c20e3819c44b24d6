"""A non-editable build ships ``prismflow.workflows`` (the top-level ``workflows/`` folder) with
its recipes. Builds a wheel (~10-30 s), hence ``slow``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_workflows_and_recipes(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "bids_examples/data", "__pycache__", "*.egg-info", "build", "dist", "work"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("prismflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "prismflow/workflows/__init__.py" in names
    assert "prismflow/workflows/participant.py" in names
    assert "prismflow/workflows/recipes/default.yaml" in names
    assert "prismflow/data/derivative_patterns.json" in names
