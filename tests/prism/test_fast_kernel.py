"""The fused MSE kernel against plain autograd: same loss, same gradients, same fit."""

import numpy as np
import pytest
import torch

from prismflow.phantoms.schemes import multishell_scheme
from prismflow.prism import PrismConfig, PrismModel
from prismflow.prism.calibration import Calibration
from prismflow.prism.kernels import FusedConstants, fidelity, fused_mse
from prismflow.prism.model import AcquisitionTensors, constrain

torch.set_num_threads(1)


def _problem(dtype, *, v=37, k=3, calibrated=True, seed=0):
    acq = multishell_scheme(n_dirs=15, n_b0=3, seed=0)
    n = len(acq)
    g = torch.Generator().manual_seed(seed)
    cfg = PrismConfig.for_volume() if calibrated else PrismConfig()
    at = AcquisitionTensors(acq, cfg.diffusivities, dtype=dtype)
    raw = [torch.randn(v, generator=g, dtype=dtype), torch.randn(v, 3 + k, generator=g, dtype=dtype),
           torch.randn(v, k, 3, generator=g, dtype=dtype), torch.randn(v, k, generator=g, dtype=dtype)]
    raw = [r.requires_grad_() for r in raw]
    mask = np.zeros((8, 8, -(-v // 64)), dtype=bool)
    mask.flat[:v] = True
    calib = Calibration(cfg.calibration, mask.shape, np.flatnonzero(mask), n, learn_sigma=False,
                        dtype=dtype)
    with torch.no_grad():
        for p in calib.parameters():
            p.normal_(0.0, 0.1, generator=g)
    y = torch.rand(v, n, generator=g, dtype=dtype)
    return cfg, at, raw, calib, y


def _loss_and_grads(cfg, at, raw, calib, y):
    for r in raw:
        r.grad = None
    calib.zero_grad()
    loss = fidelity(constrain(*raw), at, calib, y, cfg)
    loss.backward()
    return loss.detach(), [r.grad.clone() for r in raw] + [p.grad.clone() for p in calib.parameters()]


@pytest.mark.parametrize("calibrated", [True, False])
def test_fused_matches_autograd_float64(calibrated):
    cfg, at, raw, calib, y = _problem(torch.float64, calibrated=calibrated)
    lf, gf = _loss_and_grads(cfg.replace(fast_kernel=True), at, raw, calib, y)
    lp, gp = _loss_and_grads(cfg.replace(fast_kernel=False), at, raw, calib, y)
    torch.testing.assert_close(lf, lp, rtol=1e-12, atol=0)
    assert len(gf) == len(gp)
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-15)


def test_fused_matches_autograd_float32():
    cfg, at, raw, calib, y = _problem(torch.float32, v=200)
    lf, gf = _loss_and_grads(cfg.replace(fast_kernel=True), at, raw, calib, y)
    lp, gp = _loss_and_grads(cfg.replace(fast_kernel=False), at, raw, calib, y)
    torch.testing.assert_close(lf, lp, rtol=1e-5, atol=0)
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("chunk", [1, 7, 37, 1000])
def test_chunking_does_not_change_the_result(chunk):
    cfg, at, raw, calib, y = _problem(torch.float64)
    consts = FusedConstants(at)
    ref = fused_mse(constrain(*raw), consts, y, chunk=10_000)
    out = fused_mse(constrain(*raw), consts, y, chunk=chunk)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=0)
    (gr,) = torch.autograd.grad(ref, raw[2])
    (go,) = torch.autograd.grad(out, raw[2])
    torch.testing.assert_close(go, gr, rtol=1e-10, atol=1e-18)


def test_fused_without_grad_gives_the_loss_only():
    cfg, at, raw, calib, y = _problem(torch.float64)
    with torch.no_grad():
        lf = fidelity(constrain(*raw), at, calib, y, cfg)
        lp = fidelity(constrain(*raw), at, calib, y, cfg.replace(fast_kernel=False))
    assert not lf.requires_grad
    torch.testing.assert_close(lf, lp, rtol=1e-12, atol=0)


def test_fast_and_plain_fits_agree(small_phantom):
    """A short fit: the fast kernel ends where plain autograd ends (float32 round-off only)."""
    ph = small_phantom.subset(slice(0, 40))
    cfg = PrismConfig(n_iter=30, tol=0)
    fast = PrismModel(ph.acquisition, cfg.replace(fast_kernel=True)).fit(ph.signal, progress=False)
    plain = PrismModel(ph.acquisition, cfg.replace(fast_kernel=False)).fit(ph.signal, progress=False)
    cos = np.abs(np.einsum("vkd,vkd->vk", fast.directions, plain.directions))
    main = fast.fibre_fractions > 0.2
    assert np.degrees(np.arccos(np.clip(cos[main], -1, 1))).max() < 0.5
    np.testing.assert_allclose(fast.fractions, plain.fractions, atol=5e-3)


def _plain_voxel_diffusivity_mse(p, diff, at, y):
    """The per-voxel-diffusivity tissue signal written out with autograd (the reference)."""
    b = at.bvals
    c2 = torch.einsum("vkd,nd->vkn", p.directions, at.bvecs) ** 2
    da, dr = diff[:, 0, None, None], diff[:, 1, None, None]
    fin = p.f_in[..., None]
    fib = fin * torch.exp(-b * da * c2) + (1 - fin) * torch.exp(-b * (dr + (da - dr) * c2))
    pred = p.s0[:, None] * (p.fractions[:, :3] @ at.iso
                            + torch.einsum("vk,vkn->vn", p.fractions[:, 3:], fib))
    return ((pred - y) ** 2).mean()


@pytest.mark.parametrize("k", [1, 3])
def test_voxel_diffusivity_kernel_matches_autograd_float64(k):
    from prismflow.prism.kernels import fused_mse_voxel_diffusivities

    _, at, raw, _, y = _problem(torch.float64, k=k, calibrated=False)
    g = torch.Generator().manual_seed(3)
    diff = torch.stack([1.7e-3 * torch.exp(0.4 * (2 * torch.rand(y.shape[0], generator=g, dtype=torch.float64) - 1)),
                        0.3e-3 * torch.exp(0.7 * (2 * torch.rand(y.shape[0], generator=g, dtype=torch.float64) - 1))],
                       1).requires_grad_()
    consts = FusedConstants(at)
    inputs = raw + [diff]
    lf = fused_mse_voxel_diffusivities(constrain(*raw), diff, consts, y, chunk=10)
    gf = torch.autograd.grad(lf, inputs)
    lp = _plain_voxel_diffusivity_mse(constrain(*raw), diff, at, y)
    gp = torch.autograd.grad(lp, inputs)
    torch.testing.assert_close(lf, lp, rtol=1e-12, atol=0)
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-15 * max(1.0, float(b.abs().max())))
    # with every voxel at the volume's values it is the ordinary fused MSE
    same = torch.tensor([1.7e-3, 0.3e-3], dtype=torch.float64).expand(y.shape[0], 2)
    cfg = PrismConfig()
    at0 = AcquisitionTensors(multishell_scheme(n_dirs=15, n_b0=3, seed=0), cfg.diffusivities,
                             dtype=torch.float64)
    torch.testing.assert_close(fused_mse_voxel_diffusivities(constrain(*raw), same, FusedConstants(at0), y),
                               fused_mse(constrain(*raw), FusedConstants(at0), y), rtol=1e-12, atol=0)
