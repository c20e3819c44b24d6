"""Fidelity terms against scipy's Rice distribution and finite differences."""

import numpy as np
import torch
from scipy.stats import rice
from scipy.special import i0

from prismflow.prism.losses import log_i0, mse, rician_logpdf, rician_nll


def test_rician_logpdf_matches_scipy():
    rng = np.random.default_rng(0)
    nu = rng.uniform(0, 2, 200)
    sigma = rng.uniform(0.02, 0.5, 200)
    y = rng.uniform(0.001, 3, 200)
    ours = rician_logpdf(torch.tensor(y), torch.tensor(nu), torch.tensor(sigma)).numpy()
    ref = rice.logpdf(y, nu / sigma, scale=sigma)
    ok = np.isfinite(ref)          # scipy underflows to -inf far in the tails; we must not
    assert ok.mean() > 0.8 and np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=1e-9)


def test_log_i0_is_stable_for_large_arguments():
    z = torch.tensor([0.0, 1.0, 50.0, 700.0, 1e5], dtype=torch.float64)
    out = log_i0(z)
    assert torch.all(torch.isfinite(out))
    np.testing.assert_allclose(out[:3].numpy(), np.log(i0(z[:3].numpy())), rtol=1e-12)
    # asymptotics: log I0(z) ≈ z − ½ log(2π z)
    np.testing.assert_allclose(out[-1].item(), 1e5 - 0.5 * np.log(2 * np.pi * 1e5), rtol=1e-9)


def test_rician_nll_gradcheck_in_prediction_and_sigma():
    torch.manual_seed(0)
    y = torch.rand(3, 5, dtype=torch.float64) + 0.1
    nu = (torch.rand(3, 5, dtype=torch.float64) + 0.1).requires_grad_(True)
    sigma = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: rician_nll(a, y, s), (nu, sigma))


def test_nll_is_minimised_near_the_true_sigma():
    """Maximum likelihood σ of Rician samples with known ν recovers the generating σ."""
    rng = np.random.default_rng(1)
    nu, sigma = 1.0, 0.1
    y = np.hypot(nu + sigma * rng.standard_normal(20000), sigma * rng.standard_normal(20000))
    grid = np.linspace(0.05, 0.2, 151)
    vals = [rician_nll(torch.full((20000,), nu), torch.tensor(y), torch.tensor(s)).item() for s in grid]
    assert abs(grid[int(np.argmin(vals))] - sigma) < 0.003


def test_mse():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])
    assert mse(a, b).item() == 2.0
