"""dipy CSD and MSMT-CSD recover single fibres and 90° crossings."""

import pytest

from baseline_data import make_tiny_phantom, summarise
from prismflow.baselines import get_method


@pytest.mark.parametrize("response", ["oracle", "data"])
def test_dipy_csd(tiny_phantom, truth, response):
    res = get_method("dipy-csd", response=response, oracle=truth).fit_peaks(
        tiny_phantom.signal, tiny_phantom.acquisition)
    single, cross, two, one = summarise(res, tiny_phantom)
    assert single < 2.0 and cross < 4.0
    assert two >= 0.9 and one >= 0.9
    assert res.info["shell_bval"] == 1000


def test_dipy_msmt_small():
    """≈ 13 voxels/s (cvxpy QP per voxel): 4 + 4 voxels only."""
    ph = make_tiny_phantom(n_single=4, n_cross=4, seed=3)
    from prismflow.baselines import ResponseTruth
    truth = ResponseTruth(wm_evals=(1.7e-3, 0.2e-3, 0.2e-3), s0=100.0)
    res = get_method("dipy-msmt", response="oracle", oracle=truth).fit_peaks(
        ph.signal, ph.acquisition)
    single, cross, two, one = summarise(res, ph)
    assert single < 2.5 and cross < 4.0 and two >= 0.75 and one >= 0.75
    assert res.info["n_solver_failures"] == 0


@pytest.mark.slow
def test_dipy_msmt_data_response():
    ph = make_tiny_phantom(n_single=20, n_cross=10, seed=4)
    res = get_method("dipy-msmt", response="data").fit_peaks(ph.signal, ph.acquisition)
    single, cross, two, one = summarise(res, ph)
    assert single < 2.5 and cross < 4.0 and two >= 0.8
