import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_phantom():
    """Single-fibre and 90°/60° crossings, SNR 30, the benchmark's gradient scheme."""
    from prismflow.phantoms.crossing import make_crossing_phantom

    return make_crossing_phantom(snr=30, angles_deg=(60, 90), n_per_angle=30, n_single=30, seed=5)
