"""The PRISM tissue forward model: CSF, GM, restricted, and K stick-and-zeppelin fibres.

Per voxel v and measurement n (b in s/mm², unit gradient g_n, diffusivities in mm²/s)::

    S = S0 · [ f_csf e^(−b D_csf) + f_gm e^(−b D_gm) + f_res e^(−b D_res)
             + Σ_k f_k ( f_in,k e^(−b D∥ c²) + (1 − f_in,k) e^(−b (D⊥ + (D∥ − D⊥) c²)) ) ],
    c = g_n · n_k.

Constrained parameters come from raw (unconstrained) ones: S0 = softplus, fractions =
softmax over [csf, gm, restricted, fibre_1..K], f_in = sigmoid, n_k = L2-normalised. f_in is
one per fibre (raw shape (V, K), the paper's model) or one per voxel shared by its fibres (raw
shape (V, 1), ``PrismConfig.shared_f_in``); the constrained f_in is (V, K) either way.

Axis letters: V voxels, N measurements, K fibres, C = 3 + K compartments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..io.gradients import Acquisition
from .config import Diffusivities

#: Names of the isotropic compartments, in the order they occupy in the fraction vector.
ISOTROPIC = ("csf", "gm", "restricted")


@dataclass(frozen=True)
class TissueParameters:
    """Constrained tissue parameters of V voxels.

    s0 : (V,) — non-diffusion-weighted signal (units of the data).
    fractions : (V, 3 + K) — [csf, gm, restricted, fibre_1..K], rows sum to 1.
    directions : (V, K, 3) — unit fibre directions (sign-free), gradient (bvec) frame.
    f_in : (V, K) — intra-axonal (stick) fraction of each fibre, in [0, 1].
    """

    s0: torch.Tensor
    fractions: torch.Tensor
    directions: torch.Tensor
    f_in: torch.Tensor

    @property
    def n_fibres(self) -> int:
        return int(self.directions.shape[1])


class AcquisitionTensors:
    """What the forward model needs of an acquisition, precomputed once on a device.

    bvals : (N,) s/mm²; bvecs : (N, 3); iso : (3, N) isotropic attenuations;
    radial : (N,) e^(−b D⊥); b_axial : (N,) b·D∥; b_excess : (N,) b·(D∥ − D⊥).
    """

    def __init__(self, acq: Acquisition, diffusivities: Diffusivities, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        d = diffusivities
        b = torch.tensor(np.array(acq.bvals), dtype=torch.float64)
        self.n = len(acq)
        self.bvals = b.to(device=device, dtype=dtype)
        self.bvecs = torch.tensor(np.array(acq.bvecs), dtype=dtype, device=device)
        iso = torch.stack([torch.exp(-b * d.csf), torch.exp(-b * d.gm), torch.exp(-b * d.restricted)])
        self.iso = iso.to(device=device, dtype=dtype)
        self.radial = torch.exp(-b * d.radial).to(device=device, dtype=dtype)
        self.b_axial = (b * d.axial).to(device=device, dtype=dtype)
        self.b_excess = (b * (d.axial - d.radial)).to(device=device, dtype=dtype)


def constrain(s0_raw: torch.Tensor, logits: torch.Tensor, dirs_raw: torch.Tensor,
              fin_raw: torch.Tensor) -> TissueParameters:
    """Map raw parameters to :class:`TissueParameters` (softplus, softmax, L2, sigmoid).

    ``fin_raw`` (V, K) gives each fibre its own f_in; (V, 1) one f_in per voxel, broadcast to
    its K fibres (the gradient of the shared value is the sum over the fibres).
    """
    f_in = torch.sigmoid(fin_raw)
    if f_in.shape[-1] == 1 and dirs_raw.shape[-2] != 1:
        f_in = f_in.expand(*dirs_raw.shape[:-1])
    return TissueParameters(
        s0=F.softplus(s0_raw),
        fractions=torch.softmax(logits, dim=-1),
        directions=F.normalize(dirs_raw, dim=-1, eps=1e-8),
        f_in=f_in,
    )


def fibre_signal_reference(fractions_k: torch.Tensor, f_in: torch.Tensor, cos: torch.Tensor,
                           at: AcquisitionTensors) -> torch.Tensor:
    """Σ_k f_k [f_in e^(−b D∥ c²) + (1−f_in) e^(−b D⊥) e^(−b (D∥−D⊥) c²)], plain autograd.

    fractions_k, f_in : (V, K); cos : (V, K, N) → (V, N).
    """
    c2 = cos * cos
    stick = torch.exp(-at.b_axial * c2)
    zep = at.radial * torch.exp(-at.b_excess * c2)
    per_fibre = f_in[..., None] * stick + (1 - f_in[..., None]) * zep
    return torch.einsum("vk,vkn->vn", fractions_k, per_fibre)


class _FusedFibreSignal(torch.autograd.Function):
    """The fibre sum with hand-written gradients that reuse the forward exponentials.

    Saves e^(−bD∥c²) and e^(−b(D∥−D⊥)c²) once; autograd would keep about twice as many
    (V, K, N) intermediates and recompute products in the backward pass.
    """

    @staticmethod
    def forward(ctx, fractions_k, f_in, cos, b_axial, b_excess, radial):
        c2 = cos * cos
        stick = torch.exp(-b_axial * c2)
        zep = torch.exp(-b_excess * c2).mul_(radial)
        fin = f_in[..., None]
        # per_fibre = zep + fin (stick − zep), computed in place to spare memory
        diff = stick - zep
        per_fibre = torch.addcmul(zep, fin, diff)
        out = torch.einsum("vk,vkn->vn", fractions_k, per_fibre)
        ctx.save_for_backward(fractions_k, f_in, cos, stick, zep, b_axial, b_excess)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        fractions_k, f_in, cos, stick, zep, b_axial, b_excess = ctx.saved_tensors
        g = grad_out[:, None, :]                                  # (V, 1, N)
        fin = f_in[..., None]
        diff = stick - zep
        grad_frac = grad_f_in = grad_cos = None
        if ctx.needs_input_grad[0]:
            per_fibre = torch.addcmul(zep, fin, diff)
            grad_frac = (per_fibre * g).sum(-1)
        if ctx.needs_input_grad[1]:
            grad_f_in = fractions_k * (diff * g).sum(-1)
        if ctx.needs_input_grad[2]:
            # d/dc of [fin·stick + (1−fin)·zep] = −2c [fin b∥ stick + (1−fin) b_ex zep]
            dstick = stick * b_axial
            dzep = zep * b_excess
            inner = torch.addcmul(dzep, fin, dstick - dzep)
            grad_cos = inner.mul_(g).mul_(cos).mul_(-2.0 * fractions_k[..., None])
        return grad_frac, grad_f_in, grad_cos, None, None, None


def fibre_signal(fractions_k: torch.Tensor, f_in: torch.Tensor, cos: torch.Tensor,
                 at: AcquisitionTensors, *, fused: bool = True) -> torch.Tensor:
    """Fibre part of the signal, (V, N); ``fused`` picks the analytic-gradient kernel."""
    if fused:
        return _FusedFibreSignal.apply(fractions_k, f_in, cos, at.b_axial, at.b_excess, at.radial)
    return fibre_signal_reference(fractions_k, f_in, cos, at)


def tissue_signal(params: TissueParameters, at: AcquisitionTensors, *,
                  fused: bool = True) -> torch.Tensor:
    """Noise-free tissue signal (V, N) for constrained parameters."""
    k = params.n_fibres
    cos = torch.einsum("vkd,nd->vkn", params.directions, at.bvecs)
    fib = fibre_signal(params.fractions[:, 3:3 + k], params.f_in, cos, at, fused=fused)
    iso = params.fractions[:, :3] @ at.iso
    return params.s0[:, None] * (iso + fib)


def predict(acq: Acquisition, *, s0, fractions, directions, f_in,
            diffusivities: Diffusivities | None = None, chunk: int = 4096) -> np.ndarray:
    """Signal (V, N) for any parameters given as arrays (numpy or torch), float64.

    s0 : (V,); fractions : (V, 3 + K) [csf, gm, restricted, fibres]; directions : (V, K, 3)
    (normalised here); f_in : (V, K). Computed in voxel chunks of ``chunk`` so that the (V, K, N) float64 temporaries of the
    plain formula stay small whatever V is.
    """
    d = diffusivities or Diffusivities()
    at = AcquisitionTensors(acq, d, dtype=torch.float64)
    as_t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731
    s0, fractions, directions, f_in = (as_t(x) for x in (s0, fractions, directions, f_in))
    v = s0.shape[0]
    out = np.empty((v, len(acq)), dtype=np.float64)
    with torch.no_grad():
        for a in range(0, v, chunk):
            sl = slice(a, a + chunk)
            params = TissueParameters(s0=s0[sl], fractions=fractions[sl],
                                      directions=F.normalize(directions[sl], dim=-1),
                                      f_in=f_in[sl])
            out[sl] = tissue_signal(params, at, fused=False).numpy()
    return out
