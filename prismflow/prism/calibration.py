"""Nuisance calibration: smooth bias field, per-measurement affine, learned noise level σ.

Applied to the clean tissue signal S (V, N)::

    Ŝ = B(x_v) · (e^{a_n} · S + c_n),   B = exp(trilinear_upsample(control grid))

All parameters start at identity (zeros) and are pulled back towards it by L2 penalties (and
total variation of the log bias field), so on clean data they stay near identity. The
per-measurement log-scale and offset are centred within each shell: a common scale of a whole
shell is indistinguishable from a diffusivity change, so letting calibration take it would
absorb tissue signal (model mismatch) instead of acquisition drift.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import CalibrationConfig


class Calibration(nn.Module):
    """Calibration parameters of one fitted patch.

    Parameters
    ----------
    cfg : which operators are on and their penalty weights.
    grid_shape : (X, Y, Z) of the patch the voxels live in.
    voxel_index : (V,) int — flat C-order index of each fitted voxel in ``grid_shape``.
    n_meas : N.
    learn_sigma : learn σ (Rician NLL mode).
    shell_index : (N,) int — shell of each measurement (b=0 volumes form one shell); the
        per-measurement affine is centred within each shell. Default: one group.
    """

    def __init__(self, cfg: CalibrationConfig, grid_shape: tuple[int, int, int],
                 voxel_index: np.ndarray, n_meas: int, *, learn_sigma: bool,
                 sigma_init: float | None = None, shell_index: np.ndarray | None = None,
                 device="cpu", dtype=torch.float32):
        super().__init__()
        shell_index = np.zeros(n_meas, dtype=np.int64) if shell_index is None else shell_index
        _, inverse, counts = np.unique(shell_index, return_inverse=True, return_counts=True)
        self.register_buffer("shell_index", torch.as_tensor(inverse, dtype=torch.long, device=device))
        self.register_buffer("shell_counts", torch.as_tensor(counts, dtype=dtype, device=device))
        self.cfg = cfg
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.register_buffer("voxel_index", torch.as_tensor(voxel_index, dtype=torch.long, device=device))
        zeros = lambda *s: nn.Parameter(torch.zeros(*s, device=device, dtype=dtype))  # noqa: E731
        self.bias_coeffs = zeros(*cfg.bias_grid) if cfg.bias_field else None
        self.log_scale = zeros(n_meas) if cfg.measurement_affine else None
        self.offset = zeros(n_meas) if cfg.measurement_affine else None
        s = sigma_init if sigma_init is not None else cfg.sigma_init
        self.log_sigma = (nn.Parameter(torch.full((), math.log(s), device=device, dtype=dtype))
                          if learn_sigma else None)

    def log_bias_volume(self) -> torch.Tensor | None:
        """log B over the whole patch grid, (X, Y, Z), or None when the bias field is off."""
        if self.bias_coeffs is None:
            return None
        up = F.interpolate(self.bias_coeffs[None, None], size=self.grid_shape, mode="trilinear",
                           align_corners=True)
        return up[0, 0]

    def bias(self) -> torch.Tensor | None:
        """Multiplicative bias B at the fitted voxels, (V,), or None."""
        log_b = self.log_bias_volume()
        if log_b is None:
            return None
        return torch.exp(log_b.reshape(-1)[self.voxel_index])

    @property
    def sigma(self) -> torch.Tensor | None:
        """σ relative to the b0-normalised signal (scalar), or None when not learned."""
        return None if self.log_sigma is None else torch.exp(self.log_sigma)

    def _centred(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.zeros_like(self.shell_counts).index_add_(0, self.shell_index, x) / self.shell_counts
        return x - means[self.shell_index]

    def measurement_affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Shell-centred (log-scale a_n, offset c_n), each (N,), or None when off."""
        if self.log_scale is None:
            return None
        return self._centred(self.log_scale), self._centred(self.offset)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        """Apply the calibration chain to a clean signal (V, N)."""
        out = signal
        affine = self.measurement_affine()
        if affine is not None:
            out = out * torch.exp(affine[0]) + affine[1]
        b = self.bias()
        if b is not None:
            out = out * b[:, None]
        return out

    def penalty(self) -> torch.Tensor:
        """Identity-anchoring penalty (scalar)."""
        c = self.cfg
        total = torch.zeros((), device=self.voxel_index.device)
        if self.bias_coeffs is not None:
            total = total + c.weight_bias * torch.mean(self.bias_coeffs ** 2)
            log_b = self.log_bias_volume()
            tv = sum(torch.mean(torch.abs(torch.diff(log_b, dim=d))) for d in range(3)
                     if log_b.shape[d] > 1)
            total = total + c.weight_bias_tv * tv
        if self.log_scale is not None:
            a, off = self.measurement_affine()
            total = total + c.weight_scale * torch.mean(a ** 2)
            total = total + c.weight_offset * torch.mean(off ** 2)
        return total
