"""Forward model checks against dipy's tensor signals and against plain autograd."""

import numpy as np
import pytest
import torch
from dipy.sims.voxel import single_tensor

from prismflow.phantoms.schemes import multishell_scheme
from prismflow.prism.config import Diffusivities
from prismflow.prism.model import (AcquisitionTensors, _FusedFibreSignal, fibre_signal_reference,
                                   predict)

ACQ = multishell_scheme(n_dirs=20, n_b0=2, seed=1)
D = Diffusivities()


def _evecs_for(direction):
    """Rotation whose first column is ``direction`` (dipy's principal eigenvector)."""
    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    e2 = np.cross(d, helper)
    e2 /= np.linalg.norm(e2)
    return np.column_stack([d, e2, np.cross(d, e2)])


def _one_compartment(index, n_fibres=1, direction=(0.3, -0.5, 0.8), f_in=0.5):
    fractions = np.zeros((1, 3 + n_fibres))
    fractions[0, index] = 1.0
    dirs = np.tile(np.asarray(direction, float), (1, n_fibres, 1))
    return predict(ACQ, s0=[2.0], fractions=fractions, directions=dirs, f_in=np.full((1, n_fibres), f_in),
                   diffusivities=D)[0]


@pytest.mark.parametrize("index,diff", [(0, D.csf), (1, D.gm), (2, D.restricted)])
def test_isotropic_compartments_match_dipy_isotropic_tensor(index, diff):
    gtab = ACQ.to_dipy()
    ref = single_tensor(gtab, S0=2.0, evals=np.array([diff, diff, diff]), evecs=np.eye(3))
    np.testing.assert_allclose(_one_compartment(index), ref, rtol=1e-10)


def test_stick_and_zeppelin_match_dipy_tensors():
    """f_in·stick(D∥,0,0) + (1−f_in)·zeppelin(D∥,D⊥,D⊥), each a dipy single_tensor."""
    gtab = ACQ.to_dipy()
    n = np.array([0.3, -0.5, 0.8])
    evecs = _evecs_for(n)
    stick = single_tensor(gtab, S0=2.0, evals=np.array([D.axial, 0, 0]), evecs=evecs)
    zep = single_tensor(gtab, S0=2.0, evals=np.array([D.axial, D.radial, D.radial]), evecs=evecs)
    for f_in in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(_one_compartment(3, direction=n, f_in=f_in),
                                   f_in * stick + (1 - f_in) * zep, rtol=1e-9, atol=1e-12)


def test_signal_is_sign_free_and_linear_in_fractions():
    rng = np.random.default_rng(0)
    v, k = 5, 3
    fr = rng.dirichlet(np.ones(3 + k), size=v)
    dirs = rng.standard_normal((v, k, 3))
    fin = rng.uniform(size=(v, k))
    s = predict(ACQ, s0=np.ones(v), fractions=fr, directions=dirs, f_in=fin)
    np.testing.assert_allclose(predict(ACQ, s0=np.ones(v), fractions=fr, directions=-dirs, f_in=fin), s)
    # b=0 signal equals S0 because fractions sum to one
    np.testing.assert_allclose(s[:, ACQ.b0_mask], 1.0, rtol=1e-12)


def test_fused_kernel_matches_autograd_forward_and_gradients():
    torch.manual_seed(0)
    at = AcquisitionTensors(ACQ, D, dtype=torch.float64)
    v, k = 4, 3
    fr = torch.rand(v, k, dtype=torch.float64, requires_grad=True)
    fin = torch.rand(v, k, dtype=torch.float64, requires_grad=True)
    cos = (torch.rand(v, k, len(ACQ), dtype=torch.float64) * 2 - 1).requires_grad_(True)
    ref = fibre_signal_reference(fr, fin, cos, at)
    fused = _FusedFibreSignal.apply(fr, fin, cos, at.b_axial, at.b_excess, at.radial)
    torch.testing.assert_close(fused, ref)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), (fr, fin, cos))
    g_fus = torch.autograd.grad((fused * w).sum(), (fr, fin, cos))
    for a, b in zip(g_fus, g_ref):
        torch.testing.assert_close(a, b)


def test_fused_kernel_gradcheck_float64():
    at = AcquisitionTensors(multishell_scheme(n_dirs=6, n_b0=1), D, dtype=torch.float64)
    torch.manual_seed(1)
    fr = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)
    fin = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)
    cos = (torch.rand(2, 2, at.n, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: _FusedFibreSignal.apply(a, b, c, at.b_axial, at.b_excess, at.radial),
        (fr, fin, cos))
