"""ODF-Fingerprinting with a small dictionary (CI): single fibres and 90° crossings."""

import numpy as np
import pytest
import torch

from baseline_data import summarise
from prismflow.baselines import get_method
from prismflow.baselines.odffp import rotation_to_z


def test_rotation_to_z():
    d = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=1)
    R = rotation_to_z(d)
    z = (R @ torch.where(d[:, 2:3] < 0, -d, d)[:, :, None])[:, :, 0]
    assert torch.allclose(z, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z),
                          atol=1e-10)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(R),
                          atol=1e-10)


@pytest.mark.parametrize("response", ["oracle", "data"])
def test_odffp_recovers(tiny_phantom, truth, response, tmp_path):
    m = get_method("odffp", response=response, oracle=truth, dictionary_size=5000,
                   cache_dir=str(tmp_path))
    res = m.fit_peaks(tiny_phantom.signal, tiny_phantom.acquisition)
    single, cross, two, one = summarise(res, tiny_phantom)
    assert single < 3.0 and cross < 8.0 and two >= 0.8 and one >= 0.8
    assert res.info["dictionary_size"] == 5000
    again = get_method("odffp", response=response, oracle=truth, dictionary_size=5000,
                       cache_dir=str(tmp_path)).fit_peaks(tiny_phantom.signal,
                                                          tiny_phantom.acquisition)
    assert again.info["dictionary"].startswith("cache")
    assert np.allclose(again.directions, res.directions)
