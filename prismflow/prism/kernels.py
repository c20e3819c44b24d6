"""Fused fidelity kernels: the tissue signal, the calibration and the MSE with its gradient in one pass.

The plain path builds the signal with autograd (``tissue_signal`` → ``Calibration`` → ``mse``)
and keeps several (V, K, N) and (V, N) intermediates alive for the backward pass. The fused
MSE here computes the loss *and* its analytic gradient with respect to every input in the
forward call, walking the voxels in cache-sized chunks, so that no (V, K, N) or (V, N)
temporary outlives its chunk; ``backward`` only scales the stored gradients. The science is
the plain path's: ``tests/prism/test_fast_kernel.py`` compares losses and gradients.

Per voxel v, measurement n, fibre k (b-values s/mm², diffusivities mm²/s)::

    c_kn = g_n · n_k
    E_s,kn = e^(−b_n D∥ c²),   E_z,kn = e^(−b_n D⊥ − b_n (D∥ − D⊥) c²)
    T_n = Σ_i f_i A_i,n + Σ_k f_k (f_in,k E_s,kn + (1 − f_in,k) E_z,kn)
    pred_n = B_v (e^(a_n) S0 T_n + c_n),   loss = mean_vn (pred − y)²

Axis letters: V voxels, N measurements, K fibres.
"""

from __future__ import annotations

import torch

from .model import AcquisitionTensors, TissueParameters

#: Target size of the largest per-chunk temporary, elements (float32: 1.7 MiB; ≈ 260 voxels at
#: K = 3, N = 288, the fastest of 64–2048 measured here). Small enough
#: to stay in a core's L2 cache on CPU; CUDA uses much larger chunks (see ``chunk_voxels``).
CPU_CHUNK_ELEMENTS = 450_000
CUDA_CHUNK_ELEMENTS = 1 << 27


def chunk_voxels(n_fibres: int, n_meas: int, device: torch.device | str) -> int:
    """Voxels per chunk so that the (v, 2, K, N) exponential block has the target size."""
    target = CUDA_CHUNK_ELEMENTS if torch.device(device).type == "cuda" else CPU_CHUNK_ELEMENTS
    return max(16, target // max(1, 2 * n_fibres * n_meas))


def _fraction_gradients(g_iso, g_w, f_in, f_k):
    """dL/d(fractions) (V, 3 + K) and dL/d(f_in) (V, K) from the gradients of the isotropic
    weights ``g_iso`` (V, 3) and of the stick / zeppelin weights ``g_w`` (V, 2, K), where
    w_stick = f_k f_in and w_zeppelin = f_k (1 − f_in)."""
    g_frac = torch.cat([g_iso, g_w[:, 0] * f_in + g_w[:, 1] * (1 - f_in)], dim=1)
    return g_frac, f_k * (g_w[:, 0] - g_w[:, 1])


class _FusedTissueMSE(torch.autograd.Function):
    """Loss and analytic gradients of the calibrated tissue-signal MSE, chunk by chunk."""

    @staticmethod
    def forward(ctx, s0, fractions, directions, f_in, gain, offset, bias, y,
                bvecs, bgrad, coef, shift, d_pair, iso, chunk, want_grad):
        v_all, n = y.shape
        k = directions.shape[1]
        dev, dt = y.device, y.dtype
        inv = 1.0 / (v_all * n)
        f_k = fractions[:, 3:]
        w = torch.stack([f_k * f_in, f_k * (1 - f_in)], dim=1)          # (V, 2, K)
        total = torch.zeros((), device=dev, dtype=torch.float64)
        if want_grad:
            g_s0 = torch.empty_like(s0)
            g_iso = torch.empty(v_all, 3, device=dev, dtype=dt)
            g_w = torch.empty(v_all, 2, k, device=dev, dtype=dt)
            g_dir = torch.empty_like(directions)
            g_gain = torch.zeros(n, device=dev, dtype=dt) if gain is not None else None
            g_off = torch.zeros(n, device=dev, dtype=dt) if offset is not None else None
            g_bias = torch.empty(v_all, device=dev, dtype=dt) if bias is not None else None
            wd = w * d_pair[None, :, None]                              # (V, 2, K) D-weighted
        bt = bvecs.t().contiguous()
        c = min(chunk, v_all)
        # work buffers, allocated once per call and reused by every chunk (no page faults)
        buf_e = torch.empty(c, 2, k, n, device=dev, dtype=dt)
        buf_cos = torch.empty(c, k, n, device=dev, dtype=dt)
        buf_kn = torch.empty(c, k, n, device=dev, dtype=dt)
        buf_t, buf_s, buf_q, buf_r = (torch.empty(c, n, device=dev, dtype=dt) for _ in range(4))
        for a in range(0, v_all, chunk):
            b = min(a + chunk, v_all)
            m = b - a
            cos = torch.matmul(directions[a:b], bt, out=buf_cos[:m])   # (m, K, N)
            c2 = torch.mul(cos, cos, out=buf_kn[:m])
            e = torch.addcmul(shift, c2[:, None], coef, out=buf_e[:m]).exp_()  # (m, 2, K, N)
            t = torch.bmm(w[a:b].reshape(m, 1, 2 * k), e.view(m, 2 * k, n),
                          out=buf_t[:m].view(m, 1, n)).view(m, n)
            t.addmm_(fractions[a:b, :3], iso)                          # tissue signal / S0
            s = torch.mul(t, s0[a:b, None], out=buf_s[:m])
            q = s if gain is None else torch.mul(s, gain, out=buf_q[:m])
            if offset is not None:
                q.add_(offset)                          # s is only needed again with a gain
            r = q if bias is None else torch.mul(q, bias[a:b, None], out=buf_r[:m])
            r.sub_(y[a:b])                              # q is only needed again with a bias
            rf = r.view(-1)
            total += torch.dot(rf, rf).double()
            if not want_grad:
                continue
            gq = r.mul_(2.0 * inv)                                      # dL/dpred
            if bias is not None:
                g_bias[a:b] = q.mul_(gq).sum(1)
                gq.mul_(bias[a:b, None])                                # dL/dq
            if g_off is not None:
                g_off += gq.sum(0)
            if g_gain is not None:
                g_gain += s.mul_(gq).sum(0)
                gq.mul_(gain)                                           # dL/ds
            g_s0[a:b] = t.mul_(gq).sum(1)
            gt = gq.mul_(s0[a:b, None])                                 # dL/dT, (m, N)
            torch.mm(gt, iso.t(), out=g_iso[a:b])
            e.mul_(gt[:, None, None, :])                               # gT_n E_j,kn
            torch.sum(e, -1, out=g_w[a:b])                             # dL/dw_jk
            # dL/dc = 2c · dL/dc², dL/dc² = −b_n D∥ gT_n Σ_j d_j w_jk E_j,kn; the −b_n D∥
            # factor is folded into ``bgrad`` (3, N) of the final contraction over n
            gc = torch.mul(e[:, 0], wd[a:b, 0, :, None], out=buf_kn[:m])
            gc.addcmul_(e[:, 1], wd[a:b, 1, :, None]).mul_(cos)
            g_dir[a:b] = torch.mm(bgrad, gc.view(m * k, n).t()).t().reshape(m, k, 3)
        loss = (total * inv).to(dt)
        if want_grad:
            g_frac, g_fin = _fraction_gradients(g_iso, g_w, f_in, f_k)
            ctx.save_for_backward(g_s0, g_frac, g_dir, g_fin, g_gain, g_off, g_bias)
        ctx.want_grad = want_grad
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.want_grad:
            raise RuntimeError("the fused MSE was evaluated without gradients")
        grads = [None if g is None else g * grad_out for g in ctx.saved_tensors]
        return (*grads, None, None, None, None, None, None, None, None, None)


class FusedConstants:
    """Acquisition-only tensors of the fused kernel, built once per fit.

    bvecs : (N, 3); bvals : (N,) s/mm²; coef : (2, 1, N) = −b·[1, (D∥ − D⊥)/D∥] scaled so that
    ``coef·c²`` is the exponent of the stick / zeppelin; shift : (2, 1, N) = [0, −b D⊥];
    d_pair : (2,) = [1, (D∥ − D⊥)/D∥]·D∥ ratio used by the direction gradient; iso : (3, N).
    """

    def __init__(self, at: AcquisitionTensors):
        b_ax, b_ex = at.b_axial, at.b_excess
        self.bvecs = at.bvecs.contiguous()
        self.bvals = at.bvals.contiguous()                          #: (N,) s/mm²
        # exponent of stick: −b D∥ c²; of zeppelin: −b D⊥ − b (D∥−D⊥) c²
        self.coef = torch.stack([-b_ax, -b_ex])[:, None, :].contiguous()
        self.shift = torch.stack([torch.zeros_like(b_ax), torch.log(at.radial)])[:, None, :].contiguous()
        # gc uses coef[0] = −b D∥ as the per-measurement factor; the zeppelin term is scaled by
        # (D∥ − D⊥)/D∥ through d_pair so that both share it.
        ratio = torch.where(b_ax > 0, b_ex / torch.clamp(b_ax, min=1e-30), torch.zeros_like(b_ax))
        r = float(ratio.max()) if ratio.numel() else 0.0
        self.d_pair = torch.tensor([1.0, r], device=b_ax.device, dtype=b_ax.dtype)
        self.iso = at.iso.contiguous()
        #: (3, N) 2·(−b D∥)·g_n, the direction-gradient contraction
        self.bgrad = (2.0 * self.coef[0, 0, :, None] * self.bvecs).t().contiguous()


def fused_mse(params: TissueParameters, consts: FusedConstants, y: torch.Tensor, *,
              gain: torch.Tensor | None = None, offset: torch.Tensor | None = None,
              bias: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
    """mean((B (g·S + c) − y)²) with analytic gradients; scalar.

    params : constrained tissue parameters of V voxels (directions unit length).
    y : (V, N) b0-normalised data. gain : (N,) e^(a_n) or None; offset : (N,) c_n or None;
    bias : (V,) B_v or None. chunk : voxels per chunk (default from :func:`chunk_voxels`).
    """
    k = params.n_fibres
    if chunk is None:
        chunk = chunk_voxels(k, y.shape[1], y.device)
    tensors = (params.s0, params.fractions, params.directions, params.f_in, gain, offset, bias)
    want = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return _FusedTissueMSE.apply(*tensors, y, consts.bvecs, consts.bgrad, consts.coef, consts.shift,
                                 consts.d_pair, consts.iso, int(chunk), want)


def fidelity(params: TissueParameters, at: AcquisitionTensors, calib, y: torch.Tensor,
             cfg) -> torch.Tensor:
    """The data term of the objective for ``cfg.loss`` (scalar).

    With ``cfg.fast_kernel`` and the MSE loss this is :func:`fused_mse`; otherwise the plain
    autograd chain ``calib(tissue_signal(...))`` followed by ``mse`` / ``rician_nll``.
    ``calib`` is the fit's :class:`~prismflow.prism.calibration.Calibration`.
    """
    from .losses import mse, rician_nll
    from .model import tissue_signal

    if cfg.fast_kernel and cfg.loss == "mse":
        consts = getattr(at, "_fused_constants", None)
        if consts is None:
            consts = FusedConstants(at)
            at._fused_constants = consts
        affine = (calib.measurement_affine() if hasattr(calib, "measurement_affine")
                  else (None if calib.log_scale is None else (calib.log_scale, calib.offset)))
        gain, offset = (None, None) if affine is None else (torch.exp(affine[0]), affine[1])
        return fused_mse(params, consts, y, gain=gain, offset=offset, bias=calib.bias())
    pred = calib(tissue_signal(params, at, fused=cfg.fast_kernel))
    return mse(pred, y) if cfg.loss == "mse" else rician_nll(pred, y, calib.sigma)


class _FusedVoxelDiffusivityMSE(torch.autograd.Function):
    """Loss and analytic gradients of the uncalibrated tissue-signal MSE with per-voxel D∥, D⊥.

    The evidence test's alternative model (``prism/selection.py``): every voxel has its own
    fibre diffusivities. Same chunked scheme as :class:`_FusedTissueMSE`.
    """

    @staticmethod
    def forward(ctx, s0, fractions, directions, f_in, diff, y, bvals, bvecs, iso, chunk, want_grad):
        v_all, n = y.shape
        k = directions.shape[1]
        dev, dt = y.device, y.dtype
        inv = 1.0 / (v_all * n)
        f_k = fractions[:, 3:]
        w = torch.stack([f_k * f_in, f_k * (1 - f_in)], dim=1)          # (V, 2, K)
        d_ax, d_rad = diff[:, 0], diff[:, 1]
        total = torch.zeros((), device=dev, dtype=torch.float64)
        if want_grad:
            g_s0 = torch.empty_like(s0)
            g_iso = torch.empty(v_all, 3, device=dev, dtype=dt)
            g_w = torch.empty(v_all, 2, k, device=dev, dtype=dt)
            g_dir = torch.empty_like(directions)
            g_diff = torch.empty(v_all, 2, device=dev, dtype=dt)
            bgrad = (-2.0 * bvals[:, None] * bvecs).t().contiguous()     # (3, N)
        bt = bvecs.t().contiguous()
        for a in range(0, v_all, chunk):
            b = min(a + chunk, v_all)
            m = b - a
            cos = torch.matmul(directions[a:b], bt)                      # (m, K, N)
            bc2 = cos * cos * bvals                                      # b_n c², s/mm²
            da, dr = d_ax[a:b, None, None], d_rad[a:b, None, None]
            e = torch.stack([-da * bc2, -dr * bvals - (da - dr) * bc2], 1).exp_()  # (m, 2, K, N)
            t = torch.bmm(w[a:b].reshape(m, 1, 2 * k), e.view(m, 2 * k, n)).view(m, n)
            t.addmm_(fractions[a:b, :3], iso)                            # tissue signal / S0
            r = t * s0[a:b, None] - y[a:b]
            total += torch.dot(r.view(-1), r.view(-1)).double()
            if not want_grad:
                continue
            gq = r.mul_(2.0 * inv)                                       # dL/dpred
            g_s0[a:b] = (t * gq).sum(1)
            gt = gq.mul_(s0[a:b, None])                                  # dL/dT
            torch.mm(gt, iso.t(), out=g_iso[a:b])
            e.mul_(gt[:, None, None, :])                                 # gT_n E_j,kn
            torch.sum(e, -1, out=g_w[a:b])
            stick = e[:, 0] * w[a:b, 0, :, None]                         # w_s,k gT E_s
            zep = e[:, 1] * w[a:b, 1, :, None]                           # w_z,k gT E_z
            # exponents −D∥ b c² and −D⊥ b − (D∥ − D⊥) b c²
            g_diff[a:b, 0] = -(bc2 * (stick + zep)).sum((1, 2))
            g_diff[a:b, 1] = -((bvals - bc2) * zep).sum((1, 2))
            gc = (stick * da + zep * (da - dr)) * cos                    # dL/d(b c²)·c / −b
            g_dir[a:b] = torch.mm(bgrad, gc.reshape(m * k, n).t()).t().reshape(m, k, 3)
        loss = (total * inv).to(dt)
        if want_grad:
            g_frac, g_fin = _fraction_gradients(g_iso, g_w, f_in, f_k)
            ctx.save_for_backward(g_s0, g_frac, g_dir, g_fin, g_diff)
        ctx.want_grad = want_grad
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.want_grad:
            raise RuntimeError("the fused MSE was evaluated without gradients")
        grads = [g * grad_out for g in ctx.saved_tensors]
        return (*grads, None, None, None, None, None, None)


def fused_mse_voxel_diffusivities(params: TissueParameters, diffusivities: torch.Tensor,
                                  consts: FusedConstants, y: torch.Tensor, *,
                                  chunk: int | None = None) -> torch.Tensor:
    """mean((S − y)²) of the tissue signal with per-voxel fibre diffusivities; scalar.

    params : constrained tissue parameters of V voxels; diffusivities : (V, 2) [D∥, D⊥] per
    voxel, mm²/s (the isotropic pools keep ``consts``' values); y : (V, N) b0-normalised
    data. No calibration terms (the evidence test fits calibration-removed data).
    """
    k = params.n_fibres
    if chunk is None:
        chunk = chunk_voxels(k, y.shape[1], y.device)
    tensors = (params.s0, params.fractions, params.directions, params.f_in, diffusivities)
    want = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return _FusedVoxelDiffusivityMSE.apply(*tensors, y, consts.bvals, consts.bvecs, consts.iso,
                                           int(chunk), want)
