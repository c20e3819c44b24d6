"""Chebyshev propagation exp(−τ(A + i s W)) v of blocks of columns, with an exact backward.

The reduced Bloch–Torrey operator in the eigenbasis is K = A + i s W_u with A ⪰ 0 (diagonal
Λ plus a few within-cluster entries) and W_u real symmetric, its numerical range inside
[0, λ_hi] × i[−|s| r, |s| r] (r the mesh half-extent along u). Its exponential applied to a
block is the truncated Chebyshev series Σ_j a_j T_j(X) v, X = (2/λ_hi) K − I, whose degree
bounds the error by (1 + √2) Σ_{j>m} |a_j| ρ^j (Crouzeix–Palencia on the Bernstein ellipse
E_ρ that contains the numerical range of X).

Layout: a complex block is a real tensor (n_dir, k, C, 2) — real and imaginary parts
interleaved, i.e. the memory of a complex (n_dir, k, C) tensor — so that the column map
t ↦ i s t is one complex multiply, and W_u (i s t) is one real product W_u · (k × 2C).
The products go through numpy's BLAS (OpenBLAS), which is 1.5–1.8× faster than torch's
batched GEMM at these shapes on the reference CPU (87 × 87 · 87 × 22, float64, one thread:
21–24 vs 12–15 GFLOP/s). The terms T_j kept for the backward live in a buffer that is reused
across calls (released when the autograd graph that holds it is freed): a fresh 30–50 MB
buffer per call costs ≈ 12,000 page faults, 30–40 ms on the reference machine.

Backward: the adjoint (transposed) recurrence B_j = a_j ȳ + w_j Xᵀ B_{j+1} − B_{j+2} and
Λ̄ = Σ_j f_j diag(B_{j+1} T_jᵀ), W̄ = Σ_j f_j (B_{j+1} Pᵀ) T_jᵀ (P: t ↦ i s t), the latter as
one product with inner size m·2C over the stored terms. It is the exact derivative of the
polynomial that the forward evaluates.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import scipy.linalg.lapack
import scipy.special as ssp
import torch

from ._blas import blas_threads

__all__ = ["cheb_coeffs", "ellipse_rho", "cheb_degree", "cheb_tails", "interp_degree",
           "certify_growth", "chebyshev_apply"]

#: Crouzeix–Palencia constant bound (1 + √2)
CROUZEIX = 1.0 + math.sqrt(2.0)


# --------------------------------------------------------------------------- coefficients

def cheb_coeffs(c: np.ndarray, m: int) -> np.ndarray:
    """a_j(c) with exp(−c(x+1)) = Σ_j a_j T_j(x), j = 0..m; c (C,) → (m+1, C)."""
    j = np.arange(m + 1)[:, None]
    a = 2.0 * ((-1.0) ** j) * ssp.ive(j, c[None, :])
    a[0] *= 0.5
    return a


def ellipse_rho(b: float) -> float:
    """ρ of the Bernstein ellipse (foci ±1) through the corners ±1 ± i b."""
    if b <= 0:
        return 1.0
    t = 0.5 * (b * b + math.sqrt(b ** 4 + 4 * b * b))
    return math.sqrt(1 + t) + math.sqrt(t)


def cheb_degree(c_max: float, rho: float, tol: float) -> int:
    """Smallest m with (1+√2) Σ_{j>m} |a_j(c_max)| ρ^j ≤ tol."""
    jmax = int(c_max * rho + 40 * math.sqrt(c_max + 1) + 60)
    j = np.arange(jmax + 1)
    with np.errstate(over="ignore", divide="ignore"):
        loga = np.log(np.maximum(2.0 * ssp.ive(j, c_max), 1e-320)) + j * math.log(rho)
    terms = np.exp(np.minimum(loga, 700.0))
    tail = np.cumsum(terms[::-1])[::-1]  # tail[m] = Σ_{j≥m}
    ok = np.nonzero(CROUZEIX * tail <= tol)[0]
    m = int(ok[0]) - 1 if ok.size else jmax
    return max(m, 1)


def cheb_tails(c: np.ndarray, rho: np.ndarray, m_max: int) -> np.ndarray:
    """Error bounds (1+√2) Σ_{j>m} |a_j(c_i)| ρ_i^j, m = 0..m_max, for each column i.

    c, rho : (C,) — returns (m_max+1, C).
    """
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    rho = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    jmax = int(max(m_max + 1, float(np.max(c * rho)) + 40 * math.sqrt(float(np.max(c)) + 1)
                   + 60))
    j = np.arange(jmax + 1)[:, None]
    with np.errstate(over="ignore", divide="ignore"):
        loga = np.log(np.maximum(2.0 * ssp.ive(j, c[None, :]), 1e-320)) + j * np.log(rho)
    terms = np.exp(np.minimum(loga, 700.0))
    tail = np.cumsum(terms[::-1], axis=0)[::-1]  # tail[m] = Σ_{j≥m}
    return CROUZEIX * tail[1:m_max + 2]


def interp_degree(tau: float, half_width: float, r: float, tol: float,
                  bounds=()) -> tuple[int, float]:
    """Smallest N such that Chebyshev interpolation in s at N+1 points of an interval of
    half-width h of v(s) = exp(−τ(A + i s W))c errs by at most ``tol``·‖c‖.

    v is entire in s. On the Bernstein ellipse E_ρ of the interval, |Im s| ≤ η_ρ =
    h(ρ − 1/ρ)/2, and for s = σ + iη the Hermitian part of A + i s W is A − ηW, so
    ‖v(s)‖ ≤ ‖c‖·exp(−τ λ_min(A − ηW)) (logarithmic norm). The interpolation error is then
    ≤ 4Mρ^(−N)/(ρ − 1) (Trefethen, Approximation Theory and Approximation Practice,
    Thm 8.2), minimised over ρ. Without ``bounds``, λ_min(A ∓ ηW) ≥ −η r (A ⪰ 0, numerical
    range of W in [−r, r]); ``bounds`` — certified points (η_i, β_i) with
    λ_min(A ∓ η_i W) ≥ β_i (see :func:`certify_growth`) — tighten it: λ_min(A + tW) is
    concave in t, so it lies above the chords through (0, 0) and the (η_i, β_i), and beyond
    the last point it falls at most with slope r (Weyl).

    Returns (N, η at the minimising ρ).
    """
    h = float(half_width)
    if h <= 0:
        return 0, 0.0
    rho = np.geomspace(1.05, 1e4, 400)
    eta = h * 0.5 * (rho - 1.0 / rho)
    lb = -eta * r
    if bounds:
        pts = sorted(bounds)
        xs = np.array([0.0] + [p[0] for p in pts])
        ys = np.array([0.0] + [p[1] for p in pts])
        chord = np.interp(eta, xs, ys)
        beyond = eta > xs[-1]
        chord[beyond] = ys[-1] - (eta[beyond] - xs[-1]) * r
        lb = np.maximum(lb, chord)
    log_m = tau * np.maximum(-lb, 0.0) + math.log(4.0) - np.log(rho - 1.0)
    # N ≥ (log M − log tol)/log ρ for every ρ: take the best ρ
    n = np.ceil((log_m - math.log(tol)) / np.log(rho))
    i = int(np.argmin(n))
    return int(max(n[i], 1)), float(eta[i])


def certify_growth(A: np.ndarray, W: np.ndarray, r: float, etas, gamma: float) -> list:
    """Certified points (η, −γηr) with λ_min(A ∓ η W_u) ≥ −γηr for every direction u, for
    the η at which a Cholesky factorisation of every A ∓ ηW_u + γηr·I (all directions, both
    signs) succeeds — i.e. all are positive definite, up to the factorisation's backward
    error (~k·ε‖A‖, negligible here); 2 ms per η for 60 matrices of 87 × 87. Points that
    fail are left out (the crude bound γ = 1 holds by Weyl's inequality).

    Parameters
    ----------
    A : (k, k) float64 — symmetric positive semi-definite; W : (n_dir, k, k) float64;
    r : float — bound of the numerical ranges of the W_u; etas : iterable of η > 0;
    gamma : float in (0, 1).
    """
    nd, k = W.shape[:2]
    buf = _POOL.take((k, k), torch.float64).numpy()
    out = []
    for eta in etas:
        B = A + (gamma * eta * r) * np.eye(k)
        ok = True
        for sign in (-1.0, 1.0):
            for u in range(nd):
                # in place on a reused buffer (LAPACK dpotrf; its transpose is the Fortran
                # view of the same symmetric matrix); stops at the first failure
                np.add(B, (sign * eta) * W[u], out=buf)
                if scipy.linalg.lapack.dpotrf(buf.T, lower=1, overwrite_a=1, clean=0)[1]:
                    ok = False
                    break
            if not ok:
                break
        if ok:
            out.append((float(eta), -gamma * eta * r))
    _POOL.give(torch.from_numpy(buf))
    return out


# --------------------------------------------------------------------------- workspace

class _Pool:
    """Reusable scratch buffers keyed by (shape, dtype): at most ``keep`` idle ones per key
    and ``max_bytes`` idle in all (the oldest idle ones are dropped first).

    A buffer handed out with ``owner`` returns when ``owner`` is garbage-collected (the
    autograd node that keeps the stored terms); without an owner the caller gives it back.
    """

    def __init__(self, keep: int = 2, max_bytes: int = 256 * 2 ** 20):
        self.keep = keep
        self.max_bytes = max_bytes
        self._free: dict = {}
        self._lock = threading.Lock()

    def take(self, shape, dtype, owner=None) -> torch.Tensor:
        key = (tuple(shape), dtype)
        with self._lock:
            free = self._free.get(key)
            buf = free.pop() if free else None
        if buf is None:
            buf = torch.empty(shape, dtype=dtype)
        if owner is not None:
            weakref.finalize(owner, self.give, buf)
        return buf

    def give(self, buf: torch.Tensor) -> None:
        key = (tuple(buf.shape), buf.dtype)
        size = buf.numel() * buf.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            free = self._free.pop(key, [])  # re-inserted last: dict order = least recent first
            if len(free) < self.keep:
                free.append(buf)
            self._free[key] = free
            total = sum(b.numel() * b.element_size() for f in self._free.values() for b in f)
            for k in list(self._free):
                if total <= self.max_bytes:
                    break
                while self._free[k] and total > self.max_bytes:
                    b = self._free[k].pop(0)
                    total -= b.numel() * b.element_size()

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


_POOL = _Pool()

#: terms per product in the backward's W̄ accumulation
_CHUNK = 8


# --------------------------------------------------------------------------- the recurrence

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _matmul(W: np.ndarray, x: torch.Tensor, out: torch.Tensor) -> None:
    """out[u] = W[u] @ x[u] for blocks (n_dir, k, C, 2) seen as (n_dir, k, 2C) (numpy BLAS)."""
    nd, k = x.shape[:2]
    np.matmul(W, _np(x).reshape(nd, k, -1), out=_np(out).reshape(nd, k, -1))


def _rotate(t: torch.Tensor, phase: torch.Tensor, out: torch.Tensor) -> None:
    """out = t ⊙ phase column-wise (complex multiply; phase (C,) complex)."""
    torch.mul(torch.view_as_complex(t), phase, out=torch.view_as_complex(out))


class _Chebyshev(torch.autograd.Function):
    """y = Σ_j a_j T_j(X) v, X = scale·K − I, K v = (Λ + E) v + i s ⊙ (W_u v).

    Inputs: v (n_dir, k, C, 2); lam (k,); pvals (P,) — entries E at ``pairs`` (P, 2) long;
    Wu (n_dir, k, k) (empty (0,) when s = 0 everywhere); s (C,) float64; coeffs (m+1, C)
    float64; scale = 2/λ_hi; store — keep the terms for a backward.
    """

    @staticmethod
    def forward(ctx, v, lam, pvals, Wu, pairs, s, coeffs, scale, store):
        nd, k, C, _ = v.shape
        m = coeffs.shape[0] - 1
        dt = v.dtype
        lam_ = lam.detach().to(dt)
        pv = pvals.detach().to(dt)
        W_ = np.ascontiguousarray(_np(Wu.detach().to(dt))) if Wu.numel() else None
        # (m+1, C, 2): a per-column factor over the trailing (C, 2) block; a (C, 1) factor
        # makes torch loop over pairs (10× slower measured)
        a = coeffs.to(dt)[:, :, None].expand(m + 1, C, 2).contiguous()
        d, ph = _factors(lam_, s, scale, dt)
        has_pairs = pairs.numel() > 0
        # the recurrence runs in three contiguous buffers; each new term is then copied into
        # the store (n_dir, k, m+1, C, 2), whose layout makes the backward's W̄ one product
        T = _POOL.take((nd, k, m + 1, C, 2), dt, owner=ctx) if store else None
        bufs = [torch.empty_like(v) for _ in range(3)]
        cur, prv = bufs[0], None
        cur.copy_(v)
        if store:
            T[:, :, 0] = cur
        y = cur * a[0]
        rot = torch.empty_like(v)
        with _numpy_threads():
            for j in range(m):
                w = 0 if j == 0 else 1
                nxt = bufs[(j + 1) % 3]
                if W_ is not None:
                    _rotate(cur, ph[w], rot)
                    _matmul(W_, rot, nxt)
                    nxt.addcmul_(cur, d[w])
                else:
                    torch.mul(cur, d[w], out=nxt)
                if prv is not None:
                    nxt.sub_(prv)
                if has_pairs:
                    f = (1.0 + w) * scale
                    nxt.index_add_(1, pairs[:, 0],
                                   cur[:, pairs[:, 1]] * (f * pv)[None, :, None, None])
                y.addcmul_(nxt, a[j + 1])
                if store:
                    T[:, :, j + 1] = nxt
                prv, cur = cur, nxt
        if store:
            ctx.save_for_backward(lam_, pv, pairs, s, a)
            ctx.T = T
            ctx.W = W_
            ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, ybar):
        lam_, pv, pairs, s, a = ctx.saved_tensors
        T, W_, scale = ctx.T, ctx.W, ctx.scale
        nd, k, m1, C, _ = T.shape
        m = m1 - 1
        dt = T.dtype
        d, ph = _factors(lam_, s, scale, dt, adjoint=True)
        ybar = ybar.to(dt).contiguous()
        has_pairs = pairs.numel() > 0
        pv_bar = torch.zeros_like(pv)
        acc = torch.zeros((nd, k, C, 2), dtype=dt)  # Σ_j f_j B_{j+1} ⊙ T_j
        # R_j = f_j B_{j+1} Pᵀ (Pᵀ: t ↦ −i s t) are both the rotated input of the adjoint
        # product and the left factors of W̄ = Σ_j R_j T_jᵀ, accumulated by chunks of
        # ``_CHUNK`` terms: one product with inner size _CHUNK·2C per chunk, and no second
        # store as large as the terms'
        R = torch.empty((nd, k, _CHUNK, C, 2), dtype=dt) if W_ is not None else None
        W_bar = np.zeros((nd, k, k), dtype=W_.dtype) if W_ is not None else None
        tmp = np.empty_like(W_bar) if W_ is not None else None
        bufs = [torch.empty_like(ybar) for _ in range(3)]
        tj = torch.empty_like(ybar)
        b_next2 = None  # B_{j+2}
        b_next = bufs[m % 3]
        torch.mul(ybar, a[m], out=b_next)  # B_m
        with _numpy_threads():
            for j in range(m - 1, -1, -1):
                w = 0 if j == 0 else 1
                f = (1.0 + w) * scale
                tj.copy_(T[:, :, j])
                bj = bufs[j % 3]
                if R is not None:
                    j0 = j - j % _CHUNK
                    rj = R[:, :, j - j0]
                    _rotate(b_next, ph[w], rj)
                    _matmul(W_, rj, bj)
                    if j == j0:  # chunk [j0, j1) complete: W̄ += Σ_j R_j T_jᵀ
                        n_c = min(_CHUNK, m - j0)
                        np.matmul(_np(R[:, :, :n_c]).reshape(nd, k, -1),
                                  _np(T[:, :, j0:j0 + n_c]).reshape(nd, k, -1)
                                  .transpose(0, 2, 1), out=tmp)
                        W_bar += tmp
                    bj.addcmul_(b_next, d[w])
                else:
                    torch.mul(b_next, d[w], out=bj)
                if b_next2 is not None:
                    bj.sub_(b_next2)
                if has_pairs:
                    bj.index_add_(1, pairs[:, 1],
                                  b_next[:, pairs[:, 0]] * (f * pv)[None, :, None, None])
                    pv_bar.add_((b_next[:, pairs[:, 0]] * tj[:, pairs[:, 1]]).sum(
                        dim=(0, 2, 3)), alpha=f)
                bj.addcmul_(ybar, a[j])
                acc.addcmul_(b_next, tj, value=f)
                b_next2, b_next = b_next, bj
        lam_bar = acc.sum(dim=(0, 2, 3))
        return (b_next, lam_bar, pv_bar if has_pairs else None,
                None if W_bar is None else torch.from_numpy(W_bar),
                None, None, None, None, None)


def _factors(lam, s, scale, dt, adjoint=False):
    """Per-term constants for w = 1 (first term) and w = 2: the diagonal w(scale·λ − 1),
    (k, 1, 1), and the column phase ±i·w·scale·s, (C,) complex (− for the adjoint)."""
    cdt = torch.complex64 if dt == torch.float32 else torch.complex128
    sign = -1.0 if adjoint else 1.0
    d = [(w * (scale * lam - 1.0))[:, None, None] for w in (1.0, 2.0)]
    ph = [(sign * 1j * w * scale) * s.to(cdt) for w in (1.0, 2.0)]
    return d, ph


def chebyshev_apply(v: torch.Tensor, lam: torch.Tensor, pvals: torch.Tensor,
                    Wu: torch.Tensor, pairs: torch.Tensor, s: torch.Tensor,
                    coeffs: torch.Tensor, scale: float) -> torch.Tensor:
    """Σ_j a_j T_j(X) v for blocks v (n_dir, k, C, 2) — see :class:`_Chebyshev`.

    The terms are kept for a backward only when autograd will need them.
    """
    store = torch.is_grad_enabled() and any(
        t.requires_grad for t in (v, lam, pvals, Wu))
    return _Chebyshev.apply(v, lam, pvals, Wu, pairs, s, coeffs, scale, store)


def _numpy_threads():
    """numpy's BLAS limited to torch's thread count for a block (see :mod:`._blas`)."""
    return blas_threads(torch.get_num_threads())
