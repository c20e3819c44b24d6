"""Fixtures of the baseline tests; shared data builders live in baseline_data.py
(a unique module name: every tests/*/conftest.py is imported as `conftest`)."""

import pytest

from baseline_data import EVALS, make_tiny_phantom
from prismflow.baselines import ResponseTruth

@pytest.fixture(scope="session")
def tiny_phantom():
    return make_tiny_phantom()


@pytest.fixture(scope="session")
def truth():
    return ResponseTruth(wm_evals=EVALS, s0=100.0)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
