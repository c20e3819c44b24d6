"""Data-fidelity terms: mean squared error and the Rician negative log-likelihood.

All inputs are b0-normalised signals, shape (V, N) (V voxels, N measurements).
"""

from __future__ import annotations

import torch


def mse(pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all voxels and measurements (scalar)."""
    return torch.mean((pred - data) ** 2)


def log_i0(z: torch.Tensor) -> torch.Tensor:
    """log I0(z) for z >= 0, stable for large z: log(i0e(z)) + z."""
    return torch.log(torch.special.i0e(z)) + z


def rician_logpdf(data: torch.Tensor, nu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise Rician log-density log p(data | ν, σ).

    p(y) = y/σ² · exp(−(y² + ν²)/(2σ²)) · I0(y ν / σ²) for y > 0; ``data`` is clamped to a tiny
    positive value so that zeros (masked background) stay finite. Matches
    ``scipy.stats.rice.logpdf(y, ν/σ, scale=σ)``.
    """
    y = torch.clamp(data, min=torch.finfo(data.dtype).tiny)
    nu = torch.abs(nu)  # the density depends on |ν| only; keeps I0's argument non-negative
    s2 = sigma * sigma
    return torch.log(y) - torch.log(s2) - (y * y + nu * nu) / (2 * s2) + log_i0(y * nu / s2)


def rician_nll(pred: torch.Tensor, data: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mean Rician negative log-likelihood (scalar); ``sigma`` broadcastable to the data."""
    return -torch.mean(rician_logpdf(data, pred, sigma))
