"""The evidence test's refits: leaving pinned fibres out must not change where a refit ends."""

import numpy as np
import torch

from prismflow.phantoms.schemes import multishell_scheme
from prismflow.prism.config import Diffusivities
from prismflow.prism.kernels import FusedConstants
from prismflow.prism.model import AcquisitionTensors
from prismflow.prism.selection import (OFF_LOGIT, _refit, _refit_all, _refit_own_all,
                                       _refit_own_diffusivities, active_groups, per_voxel_sse)


def _problem(v=24, k=3, seed=0):
    acq = multishell_scheme(n_dirs=15, n_b0=3, seed=0)
    at = AcquisitionTensors(acq, Diffusivities(), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    raw = {"s0_raw": torch.randn(v, generator=g, dtype=torch.float64),
           "logits": torch.randn(v, 3 + k, generator=g, dtype=torch.float64),
           "dirs_raw": torch.randn(v, k, 3, generator=g, dtype=torch.float64),
           "fin_raw": torch.randn(v, k, generator=g, dtype=torch.float64)}
    y = torch.rand(v, len(acq), generator=g, dtype=torch.float64)
    offset = torch.zeros(v, 3 + k, dtype=torch.float64)
    # 0, 1 or 2 fibres pinned, at varying positions (and one voxel with every fibre pinned)
    for i in range(v):
        for j in range(i % 3):
            offset[i, 3 + (i + j) % k] = OFF_LOGIT
    offset[-1, 3:] = OFF_LOGIT
    return at, raw, y, offset


def test_active_groups_cover_every_voxel_once_with_its_free_fibres():
    _, _, _, offset = _problem()
    seen = []
    for rows, cols in active_groups(offset):
        for r, c in zip(rows.tolist(), cols.tolist()):
            free = [j for j in range(3) if offset[r, 3 + j] > 0.5 * OFF_LOGIT]
            assert c == (free or [0]), (r, c, free)
            seen.append(r)
    assert sorted(seen) == list(range(offset.shape[0]))


def test_compacted_refit_ends_where_the_full_refit_ends():
    """Pinned fibres carry e^-30 of the signal: without them the path is the same (float64)."""
    at, raw, y, offset = _problem()
    consts = FusedConstants(at)
    full = _refit_all(raw, offset, consts, y, 25, 0.02)
    compact = _refit(raw, offset, consts, y, 25, 0.02)
    torch.testing.assert_close(per_voxel_sse(compact, offset, at, y),
                               per_voxel_sse(full, offset, at, y), rtol=1e-9, atol=1e-12)
    free = offset[:, 3:] > 0.5 * OFF_LOGIT
    torch.testing.assert_close(compact["dirs_raw"][free], full["dirs_raw"][free], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(compact["logits"][:, :3], full["logits"][:, :3], rtol=1e-7, atol=1e-9)
    # pinned fibres are returned as they came (but for the voxel without a free fibre, which
    # keeps one pinned fibre in its refit)
    assert torch.equal(compact["dirs_raw"][:-1][~free[:-1]], raw["dirs_raw"][:-1][~free[:-1]])


def test_compacted_own_diffusivity_refit_matches_the_full_one():
    at, raw, y, offset = _problem(seed=1)
    full = _refit_own_all(raw, offset, at, y, 1.7e-3, 0.3e-3, 20, 0.02)
    compact = _refit_own_diffusivities(raw, offset, at, y, 1.7e-3, 0.3e-3, 20, 0.02)
    np.testing.assert_allclose(compact.numpy(), full.numpy(), rtol=1e-8, atol=1e-12)
