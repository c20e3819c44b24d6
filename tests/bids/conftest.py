"""Fixtures of the BIDS-app tests: the synthetic dataset, built once per session."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ET", "1")
os.environ.setdefault("MRTRIX_QUIET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from prismflow.cli import import_workflows  # noqa: E402

import_workflows()

REPO = Path(__file__).resolve().parents[2]


def _examples_module():
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def make_examples():
    return _examples_module()


@pytest.fixture(scope="session")
def synthetic_bids(tmp_path_factory, make_examples) -> Path:
    """A two-subject synthetic BIDS dataset (read only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("bids") / "synthetic"
    return make_examples.make_synthetic(root, n_subjects=2, seed=0)
