"""The registry and the input checks every method shares."""

import numpy as np
import pytest

from prismflow.baselines import METHOD_NAMES, ResponseTruth, get_method, method_class
from prismflow.io import InputError


def test_names_and_classes():
    assert set(METHOD_NAMES) == {"dipy-csd", "dipy-msmt", "mrtrix-csd", "mrtrix-msmt",
                                 "force", "odffp"}
    for name in METHOD_NAMES:
        assert method_class(name).name == name


def test_errors_are_input_errors(tiny_phantom):
    with pytest.raises(InputError, match="unknown baseline"):
        get_method("csd")
    with pytest.raises(InputError, match="oracle"):
        get_method("dipy-csd", response="oracle")
    m = get_method("dipy-csd")
    with pytest.raises(InputError, match="measurements"):
        m.fit_peaks(tiny_phantom.signal[:, :-1], tiny_phantom.acquisition)
    with pytest.raises(InputError, match="mask"):
        m.fit_peaks(tiny_phantom.signal, tiny_phantom.acquisition, mask=np.ones(3, bool))


def test_response_truth_from_phantom():
    class P:
        evals = (1.7e-3, 0.2e-3, 0.2e-3)
        s0 = 100.0
    rt = ResponseTruth.from_phantom(P())
    assert rt.wm_evals == (1.7e-3, 0.2e-3, 0.2e-3) and rt.s0 == 100.0
    with pytest.raises(InputError):
        ResponseTruth(wm_evals=(1.7, 0.2, 0.2))


def test_mask_and_4d_input(tiny_phantom, truth):
    sig = tiny_phantom.signal
    vol = sig[:40].reshape(2, 4, 5, -1)
    mask = np.zeros((2, 4, 5), bool)
    mask[0] = True
    res = get_method("dipy-csd", response="oracle", oracle=truth).fit_peaks(
        vol, tiny_phantom.acquisition, mask=mask)
    assert res.directions.shape == (20, 3, 3) and res.amplitudes.shape == (20, 3)
    assert res.seconds > 0 and res.info["n_voxels"] == 20
