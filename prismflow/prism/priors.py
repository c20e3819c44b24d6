"""Regularisers of the PRISM objective: spatial smoothness and topology priors.

Every term is a mean over voxels (or neighbour pairs), so its weight does not depend on the
patch size. Axis letters: V voxels, K fibres, P neighbour pairs.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .config import PriorWeights
from .model import TissueParameters


def neighbour_pairs(grid_mask: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """Unordered neighbour pairs among the True voxels of a 3-D mask.

    Voxels are numbered in C order of ``np.flatnonzero(grid_mask)``. Returns (P, 2) int64.
    """
    if connectivity not in (6, 26):
        raise ValueError("connectivity must be 6 or 26")
    mask = np.asarray(grid_mask, dtype=bool)
    ids = np.full(mask.shape, -1, dtype=np.int64)
    ids[mask] = np.arange(int(mask.sum()))
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3)
               if o > (0, 0, 0) and (connectivity == 26 or sum(map(abs, o)) == 1)]
    pairs = []
    for off in offsets:
        src = tuple(slice(max(0, -o), mask.shape[d] - max(0, o)) for d, o in enumerate(off))
        dst = tuple(slice(max(0, o), mask.shape[d] - max(0, -o)) for d, o in enumerate(off))
        a, b = ids[src].ravel(), ids[dst].ravel()
        keep = (a >= 0) & (b >= 0)
        pairs.append(np.stack([a[keep], b[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def tissue_maps(params: TissueParameters) -> torch.Tensor:
    """(V, 4) tissue fractions [csf, gm, restricted, wm] with wm = Σ fibre fractions."""
    f = params.fractions
    return torch.cat([f[:, :3], f[:, 3:].sum(-1, keepdim=True)], dim=-1)


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise Huber loss with transition ``delta``."""
    a = torch.abs(x)
    return torch.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta))


def smoothness(params: TissueParameters, pairs: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber of the graph Laplacian of tissue fractions: f_v − mean of its neighbours."""
    t = tissue_maps(params)
    v = t.shape[0]
    if pairs.shape[0] == 0:
        return t.sum() * 0
    i, j = pairs[:, 0], pairs[:, 1]
    acc = torch.zeros_like(t).index_add_(0, i, t[j]).index_add_(0, j, t[i])
    deg = torch.zeros(v, device=t.device, dtype=t.dtype)
    deg.index_add_(0, i, torch.ones_like(i, dtype=t.dtype)).index_add_(0, j, torch.ones_like(j, dtype=t.dtype))
    has = deg > 0
    lap = t[has] - acc[has] / deg[has, None]
    return huber(lap, delta).sum(-1).mean()


def repulsion(params: TissueParameters) -> torch.Tensor:
    """Σ_{j<k} f_j f_k (n_j·n_k)²: strong fibres in one voxel should not be parallel."""
    k = params.n_fibres
    if k < 2:
        return params.fractions.sum() * 0
    n = params.directions
    f = params.fractions[:, 3:]
    cos2 = torch.einsum("vjd,vkd->vjk", n, n) ** 2
    w = f[:, :, None] * f[:, None, :]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=n.device), diagonal=1)
    return (cos2 * w)[:, upper].sum(-1).mean()


def sparsity(params: TissueParameters, growth: float = 1.0) -> torch.Tensor:
    """Rank-weighted L1 of the minor fibre fractions: Σ_{r≥2} growth^(r−2) f_(r).

    f_(r) is the r-th largest fibre fraction; ``growth`` > 1 makes each further fibre costlier
    than the one before (a third fibre must explain more signal than a second to survive).
    """
    f = params.fractions[:, 3:]
    if f.shape[1] < 2:
        return f.sum() * 0
    ranked = torch.sort(f, dim=-1, descending=True).values[:, 1:]
    w = growth ** torch.arange(ranked.shape[1], device=f.device, dtype=f.dtype)
    return (ranked * w).sum(-1).mean()


def orphan_wm(params: TissueParameters, s0_floor: float = 0.1) -> torch.Tensor:
    """WM fraction where S0 (b0-normalised) falls below ``s0_floor``."""
    wm = params.fractions[:, 3:].sum(-1)
    return (wm * torch.relu(1 - params.s0 / s0_floor)).mean()


def continuity(params: TissueParameters, pairs: torch.Tensor) -> torch.Tensor:
    """Fraction-weighted misalignment of each fibre with the best-aligned neighbour fibre."""
    if pairs.shape[0] == 0:
        return params.fractions.sum() * 0
    n, f = params.directions, params.fractions[:, 3:]
    i, j = pairs[:, 0], pairs[:, 1]
    cos2 = torch.einsum("pkd,pmd->pkm", n[i], n[j]) ** 2
    mis_i = (f[i] * (1 - cos2.max(-1).values)).sum(-1)
    mis_j = (f[j] * (1 - cos2.max(-2).values)).sum(-1)
    return 0.5 * (mis_i + mis_j).mean()


def ordering(params: TissueParameters) -> torch.Tensor:
    """Hinge Σ_k relu(f_{k+1} − f_k): fibre 1 is the largest, then 2, ..."""
    f = params.fractions[:, 3:]
    if f.shape[1] < 2:
        return f.sum() * 0
    return torch.relu(f[:, 1:] - f[:, :-1]).sum(-1).mean()


def prior_penalty(params: TissueParameters, weights: PriorWeights,
                  pairs: torch.Tensor | None, scale: float = 1.0,
                  topology_ramp: float = 1.0) -> torch.Tensor:
    """Weighted sum of all priors that are switched on (scalar), times ``scale``.

    Weights are in units of the Rician NLL per measurement (nats); the MSE fit passes
    ``scale = 2σ̂²`` so that one set of weights means the same at any SNR.
    ``topology_ramp`` ∈ [0, 1] multiplies the model-selection terms (repulsion, sparsity)
    during the warm-up of the continuation schedule.
    """
    total = params.s0.sum() * 0
    w = weights
    if w.repulsion:
        total = total + topology_ramp * w.repulsion * repulsion(params)
    if w.sparsity:
        total = total + topology_ramp * w.sparsity * sparsity(params, w.sparsity_growth)
    if w.ordering:
        total = total + w.ordering * ordering(params)
    if w.orphan_wm:
        total = total + w.orphan_wm * orphan_wm(params)
    if pairs is not None and pairs.shape[0] > 0:
        if w.smoothness:
            total = total + w.smoothness * smoothness(params, pairs, w.smoothness_delta)
        if w.continuity:
            total = total + w.continuity * continuity(params, pairs)
    return total * scale
