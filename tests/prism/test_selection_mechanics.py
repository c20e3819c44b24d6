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


def test_one_fibre_with_its_own_diffusivities_fits_a_dipy_tensor_exactly():
    """Analytic reference: a cylindrically symmetric tensor (λ∥, λ⊥) with free water is PRISM's
    zeppelin with f_in = 0, D∥ = λ∥, D⊥ = λ⊥ plus the CSF pool, so the voxel-wise-diffusivity
    fit (the evidence test's alternative, ``sse_with_voxel_diffusivities``) must reach a
    residual near zero on dipy's noise-free signal, from a start 10° off and D 20 % off; and a
    second fibre must find nothing left to explain. A 60° crossing of two such tensors, in
    contrast, is fitted far better by two fibres than by one."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    from prismflow.phantoms.crossing import second_fibre
    from prismflow.prism.selection import sse_with_voxel_diffusivities

    acq = multishell_scheme(n_dirs=30, n_b0=3, seed=1)
    gtab = gradient_table(np.asarray(acq.bvals), bvecs=np.asarray(acq.bvecs), b0_threshold=50)
    rng = np.random.default_rng(3)
    first = np.array([[0.6, 0.0, 0.8]])
    second = second_fibre(first, np.array([60.0]), rng)[0]
    evals = [(1.5e-3, 0.45e-3, 0.45e-3), (1.9e-3, 0.3e-3, 0.3e-3), (3e-3, 3e-3, 3e-3)]
    single, _ = multi_tensor(gtab, np.array(evals[::2]), S0=1.0, angles=[tuple(first[0]), (0, 0, 1)],
                             fractions=[85.0, 15.0], snr=None)
    cross, _ = multi_tensor(gtab, np.array(evals), S0=1.0,
                            angles=[tuple(first[0]), tuple(second), (0, 0, 1)],
                            fractions=[50.0, 40.0, 10.0], snr=None)
    y = torch.as_tensor(np.stack([single, cross]), dtype=torch.float64)
    centre = Diffusivities(axial=1.7e-3 * 1.2, radial=0.4e-3 * 1.2)
    at = AcquisitionTensors(acq, centre, dtype=torch.float64)
    tilt = second_fibre(first, np.array([10.0]), rng)[0]
    dirs = torch.as_tensor(np.stack([[tilt, second], [tilt, second]]), dtype=torch.float64)
    raw = {"s0_raw": torch.zeros(2, dtype=torch.float64),
           "logits": torch.tensor([[-1.5, -1.5, -1.5, 0.0, 0.0]] * 2, dtype=torch.float64),
           "dirs_raw": dirs, "fin_raw": torch.zeros(2, 1, dtype=torch.float64)}
    one = torch.zeros(2, 5, dtype=torch.float64)
    one[:, 4] = OFF_LOGIT
    kw = dict(axial=centre.axial, radial=centre.radial, n_iter=600)
    sse1 = sse_with_voxel_diffusivities(raw, one, at, y, **kw)
    sse2 = sse_with_voxel_diffusivities(raw, torch.zeros(2, 5, dtype=torch.float64), at, y, **kw)
    sigma2 = (1 / 30) ** 2                    # what these residuals weigh at SNR 30
    assert float(sse1[0]) / sigma2 < 0.5, float(sse1[0]) / sigma2
    assert float(sse1[0] - sse2[0]) / sigma2 < 0.5
    assert float(sse1[1] - sse2[1]) / sigma2 > 50.0, float(sse1[1] - sse2[1]) / sigma2
