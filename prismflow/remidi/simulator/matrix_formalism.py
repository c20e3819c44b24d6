"""Matrix-formalism Bloch–Torrey signal on a tetrahedral mesh, differentiable w.r.t. vertices.

Pipeline: FEM element blocks (:mod:`.fem`) → smallest eigenpairs of (S + Q, M)
(:mod:`.eigen`) → projected operators in the eigenbasis → propagation of the magnetisation
coefficients through each waveform segment → signal, normalised by the b = 0 signal.

In the M-orthonormal eigenbasis Φ (k functions) the coefficients ν obey
dν/dt = −(A + i q f(t) W_u) ν, ν(0) = c, S = cᵀ ν(T), with

- A = Φᵀ(S + Q + R)Φ (diagonal Λ up to round-off; its entries inside clusters of
  (near-)degenerate eigenvalues are kept with autograd, which makes the eigen backward exact
  for degenerate spectra, see :mod:`.eigen`),
- W_u = Σ_d u_d Φᵀ J_d Φ with coordinates taken about the volume centroid,
- c = Φᵀ M 1 (uniform initial density; S(b=0, no T2) = volume).

Propagation over a segment of duration τ with gradient amplitude s = q·a is
exp(−τ(A + i s W_u)), applied to a block of vectors without forming any k×k exponential:
a Chebyshev expansion of exp(−τz) on an ellipse that contains the numerical range of
A + i s W_u (Re ∈ [0, λ_max], |Im| ≤ |s|·r with r the mesh half-extent along u), whose
degree is chosen so that the error bound Σ_{j>m}|a_j|ρ^j·(1+√2) (Crouzeix) is below ``tol``.
Gradient-free segments use the exact diagonal exponential (plus the first-order
within-cluster term). A PGSE-like waveform [+a, 0, −a] needs only the first pulse:
S = conj(v)ᵀ G v, v = exp(−δK)c, G = exp(−(Δ−δ)A); v is computed at Chebyshev nodes in q
and interpolated (v(−s) = conj(v(s)), rigorous node count; see :func:`_propagate_pulses`),
and S comes from Gram matrices of the node vectors. Everything is batched: directions ×
columns, with one real k×k matrix product per direction per Chebyshev term
(:mod:`.chebyshev`); no Python loop over measurements.

Public units: b in s/mm², diffusivity in mm²/s, lengths µm, times ms. Inside: µm, ms,
D in µm²/ms (× 1e3), b in ms/µm² (× 1e-3), q = γg in rad/(µm·ms).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from ...io.errors import InputError
from ._blas import blas_threads
from .chebyshev import (certify_growth, cheb_coeffs, cheb_degree, cheb_tails,
                        chebyshev_apply, ellipse_rho, interp_degree)
from .eigen import DENSE_MAX, _gap_tol, clusters, generalized_eigh
from .fem import apply_blocks, assemble_blocks, project_blocks
from .sequences import Waveform

logger = logging.getLogger(__name__)

__all__ = ["simulate_signal", "eigen_count", "ProjectedOperators", "project_operators",
           "signal_from_operators"]

#: mm²/s → µm²/ms
D_SCALE = 1e3
#: s/mm² → ms/µm²
B_SCALE = 1e-3


# --------------------------------------------------------------------------- eigen count

def _lambda_cut(diffusivity_mm2_s, length_scale_um: float) -> float:
    d = np.max(np.atleast_1d(np.asarray(diffusivity_mm2_s, dtype=np.float64))) * D_SCALE
    return float(d * math.pi ** 2 / length_scale_um ** 2)


def eigen_count(mesh, diffusivity: float = 2e-3, length_scale_um: float | None = None, *,
                t2_ms=None, permeability_um_per_ms=0.0, gap_rel: float = 1e-6,
                method: str = "auto") -> int:
    """Number of eigenpairs with λ ≤ D·π²/ℓ² (SpinDoctor's cut-off), not splitting clusters.

    Parameters
    ----------
    mesh : Mesh; diffusivity : mm²/s (float or per compartment); length_scale_um : ℓ in µm
    (default 1 µm).

    Returns
    -------
    int — use it as a fixed ``n_eig`` while optimising a mesh.
    """
    ell = 1.0 if length_scale_um is None else float(length_scale_um)
    if ell <= 0:
        raise InputError(f"length_scale_um must be > 0; got {ell}")
    with torch.no_grad():
        ops = project_operators(mesh, diffusivity, None, ell, t2_ms=t2_ms,
                                permeability_um_per_ms=permeability_um_per_ms, method=method,
                                gap_rel=gap_rel)
    return ops.k


def _diff_um(diffusivity):
    d = np.asarray(diffusivity, dtype=np.float64)
    if np.any(d <= 0):
        raise InputError(f"diffusivity must be > 0 mm²/s; got {diffusivity}")
    if d.ndim == 0:
        return float(d) * D_SCALE
    return torch.as_tensor(d * D_SCALE)


# --------------------------------------------------------------------------- projections

class ProjectedOperators:
    """The reduced problem in the eigenbasis (k functions), all torch float64.

    Attributes
    ----------
    lam : (k,) diagonal of A (1/ms); pairs : (P, 2) long — off-diagonal positions (i ≠ j)
    kept: within clusters of (near-)equal eigenvalues, or all of them when relaxation
    couples the modes (then ``exact_gap`` is False); pvals : (P,) their values;
    W : (3, k, k) µm — coordinate matrices about ``center``; c : (k,) µm^{3/2} — Φᵀ M 1;
    center : (3,) µm (volume centroid); eigenvalues : (k,) numpy, of the eigenproblem.
    """

    def __init__(self, lam, pairs, pvals, exact_gap, W, c, center, points, eigenvalues):
        self.lam, self.pairs, self.pvals, self.exact_gap = lam, pairs, pvals, exact_gap
        self.W, self.c, self.center = W, c, center
        self._points = points  # (V, 3) vertices minus center, detached
        self.eigenvalues = eigenvalues

    @property
    def k(self) -> int:
        return int(self.lam.shape[0])

    def extent_along(self, u: torch.Tensor) -> torch.Tensor:
        """max_v |(x_v − center)·u| for each direction u (n_dir,), µm (no grad)."""
        return (self._points @ u.T.to(self._points.dtype)).abs().amax(dim=0)


def project_operators(mesh, diffusivity_mm2_s=2e-3, n_eig: int | None = None,
                      length_scale_um: float | None = None, *, t2_ms=None,
                      permeability_um_per_ms=0.0, method: str = "auto",
                      gap_rel: float = 1e-6) -> ProjectedOperators:
    """Assemble, solve the eigenproblem, and project onto the kept eigenbasis (differentiable)."""
    if mesh.vertices.dtype != torch.float64:  # the eigenproblem needs float64 (grads flow)
        mesh = mesh.with_vertices(mesh.vertices.to(torch.float64))
    D = _diff_um(diffusivity_mm2_s)
    t2_scalar = t2_ms is not None and np.ndim(t2_ms) == 0
    blocks = assemble_blocks(mesh, D, t2_ms=None if (t2_ms is None or t2_scalar) else t2_ms,
                             permeability_um_per_ms=permeability_um_per_ms)
    n = blocks.n_vertices
    if method == "auto":
        method = "dense" if n <= DENSE_MAX else "sparse"
    lam_cut = k_guess = None
    if n_eig is None:
        ell = 1.0 if length_scale_um is None else float(length_scale_um)
        if ell <= 0:
            raise InputError(f"length_scale_um must be > 0; got {ell}")
        lam_cut = _lambda_cut(diffusivity_mm2_s, ell)
        # Weyl's law: N(λ) ≈ V λ^{3/2} / (6π² D^{3/2}), with a margin
        d_max = float(np.max(np.atleast_1d(np.asarray(diffusivity_mm2_s)))) * D_SCALE
        vol = float(blocks.M.detach().sum())
        k_guess = int(1.3 * vol * lam_cut ** 1.5 / (6 * math.pi ** 2 * d_max ** 1.5)) + 16
    elif not 1 <= int(n_eig) <= n:
        raise InputError(f"n_eig must be in 1..{n} for this mesh; got {n_eig}")
    lam_np, phi = generalized_eigh(blocks.S, blocks.M, blocks.tetrahedra, n,
                                   None if n_eig is None else int(n_eig), A_itf=blocks.Q,
                                   itf_index=blocks.Q_index, method=method, gap_rel=gap_rel,
                                   lam_cut=lam_cut, k_guess=k_guess)
    n_eig = int(lam_np.shape[0])
    lam_np = lam_np.detach().numpy()
    idx = blocks.tetrahedra
    A = project_blocks(idx, blocks.S, phi)
    if blocks.Q is not None:
        A = A + project_blocks(blocks.Q_index, blocks.Q, phi)
    if blocks.R is not None:
        A = A + project_blocks(idx, blocks.R, phi)
    W = project_blocks(idx, blocks.J, phi)  # (3, k, k)
    W = 0.5 * (W + W.transpose(1, 2))
    ones = torch.ones((n, 1), dtype=phi.dtype)
    c = (phi.T @ apply_blocks(idx, blocks.M, ones, n))[:, 0]
    A = 0.5 * (A + A.T)
    lam = torch.diagonal(A).clone()
    if t2_scalar:
        lam = lam + 1.0 / float(t2_ms)
    exact_gap = blocks.R is None
    if exact_gap:
        # within-cluster off-diagonal entries (round-off-sized, but they carry gradient)
        tol = _gap_tol(lam_np, gap_rel)
        lab = clusters(lam_np, tol)
        mask = (lab[:, None] == lab[None, :]) & ~np.eye(n_eig, dtype=bool)
    else:
        # relaxation couples all modes: keep the whole projected matrix
        mask = ~np.eye(n_eig, dtype=bool)
    ii, jj = np.nonzero(mask)
    pairs = torch.as_tensor(np.stack([ii, jj], axis=1), dtype=torch.long).reshape(-1, 2)
    pvals = A[pairs[:, 0], pairs[:, 1]]
    with torch.no_grad():
        x = mesh.vertices.detach() - blocks.center.detach()
    return ProjectedOperators(lam, pairs, pvals, exact_gap, W, c, blocks.center, x, lam_np)


# --------------------------------------------------------------------------- propagation

def _gap(ops: "ProjectedOperators", v: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """exp(−τA) v for the diagonal-plus-cluster A; v (n_dir, k, C, 2), τ (C,) ms.

    The within-cluster off-diagonal entries of A are round-off-sized; their first-order
    term (divided differences of exp(−τλ)) is exact to O(ε²) and carries their gradient.
    """
    lam = ops.lam
    e = torch.exp(-tau[None, :] * lam[:, None]).to(v.dtype)  # (k, C)
    out = e[None, :, :, None] * v
    if ops.pairs.numel():
        i, j = ops.pairs[:, 0], ops.pairs[:, 1]
        d = _pair_terms(ops, tau)  # (P, C)
        out = out.index_add(1, i, d.to(v.dtype)[None, :, :, None] * v[:, j])
    return out


def _pair_terms(ops: "ProjectedOperators", tau: torch.Tensor) -> torch.Tensor:
    """(P, C): the entries of exp(−τA) at ``ops.pairs`` to first order in the off-diagonal
    entries E: E_ij·(e^{−τλ_i} − e^{−τλ_j})/(λ_i − λ_j) (symmetric in i, j)."""
    lam = ops.lam
    i, j = ops.pairs[:, 0], ops.pairs[:, 1]
    dl = (lam[i] - lam[j])[:, None]
    x = -tau[None, :] * dl
    safe = torch.where(x.abs() < 1e-8, torch.ones_like(x), x)
    phi1 = torch.where(x.abs() < 1e-8, 1.0 + 0.5 * x, torch.expm1(x) / safe)
    return ops.pvals[:, None] * (-tau[None, :] * torch.exp(-tau[None, :] * lam[j][:, None])
                                 * phi1)


def _gram(ops: "ProjectedOperators", V: torch.Tensor, tau: float) -> torch.Tensor:
    """Vᵀ exp(−τA) V, (n_dir, n, n), for real blocks V (n_dir, k, n) — as :func:`_gap`."""
    tau_t = torch.tensor([float(tau)], dtype=torch.float64)
    e = torch.exp(-tau_t * ops.lam).to(V.dtype)  # (k,)
    G = (V * e[None, :, None]).transpose(1, 2) @ V
    if ops.pairs.numel():
        d = _pair_terms(ops, tau_t)[:, 0].to(V.dtype)  # (P,)
        G = G + torch.einsum("upa,p,upb->uab", V[:, ops.pairs[:, 0]], d,
                             V[:, ops.pairs[:, 1]])
    return G


def _propagate(ops, Wu, v, tau: torch.Tensor, s: torch.Tensor, r: float, hi: float,
               tol: float, weights: np.ndarray | None = None):
    """exp(−τ_c (A + i s_c W_u)) v for every column c (Chebyshev, one degree per call).

    The degree bounds each column's error (its own ellipse: |s_c| sets ρ) by ``tol``, or,
    with ``weights`` (n_out, C) ≥ 0, the combinations weights @ ε of the column errors ε
    (what reaches interpolated outputs). v: (n_dir, k, C, 2) real (real/imaginary parts).
    Returns (v, number of terms).
    """
    tau_np = tau.detach().numpy()
    s_abs = np.abs(s.detach().numpy())
    s_max = float(s_abs.max()) if s_abs.size else 0.0
    rho = ellipse_rho(2.0 * s_max * r / hi)
    c_all = 0.5 * tau_np * hi
    # sub-steps when one long step would need a very high degree
    n_sub = 1
    m = cheb_degree(float(c_all.max()), rho, tol)
    while True:
        m2 = cheb_degree(float(c_all.max()) / (2 * n_sub), rho, tol / (2 * n_sub))
        if 2 * n_sub * m2 < n_sub * m:
            n_sub, m = 2 * n_sub, m2
        else:
            break
    # the smallest degree whose per-column bounds (each with its own ρ) meet the tolerance
    rho_c = np.array([ellipse_rho(2.0 * x * r / hi) for x in s_abs])
    eps = cheb_tails(c_all / n_sub, rho_c, m + 8)  # (m+9, C)
    err = eps.max(axis=1) if weights is None else (eps @ weights.T).max(axis=1)
    ok = np.nonzero(err <= tol / n_sub)[0]
    if not ok.size:  # the a-priori degree was too optimistic: say so, use the largest tried
        logger.warning("Chebyshev degree %d does not meet tol %.2g (bound %.2g); using it anyway",
                    m + 8, tol, float(err[-1]) * n_sub)
    m = max(int(ok[0]) if ok.size else m + 8, 1)
    coeffs = torch.as_tensor(cheb_coeffs(c_all / n_sub, m))  # (m+1, C)
    if s_max == 0.0:
        Wu = Wu.new_zeros((0,))
    for _ in range(n_sub):
        v = chebyshev_apply(v, ops.lam, ops.pvals, Wu, ops.pairs, s.to(torch.float64),
                            coeffs, 2.0 / hi)
    return v, m * n_sub


def _interp_nodes(tau: float, half_width: float, r: float, tol: float, ops=None,
                  Wu=None) -> int:
    """N for interpolation in s on [−h, h] at N + 1 Chebyshev points, from the rigorous bound
    of :func:`.chebyshev.interp_degree`. With ``ops`` and ``Wu``, the growth of v off the
    real axis is certified for this mesh at two points (:func:`.chebyshev.certify_growth`:
    λ_min(A ∓ ηW_u) ≥ −0.625·η r, two batched Cholesky factorisations) instead of the crude
    −η r (λ_min is ≈ 0.55 η r on the axon mesh): on the paper's protocol N goes from 22 to
    18, 11 propagated columns to 9."""
    n, eta = interp_degree(tau, half_width, r, tol)
    if ops is None or Wu is None or n < 6:
        return n
    with torch.no_grad():
        A = torch.diag(ops.lam.detach())
        if ops.pairs.numel():
            A = A.index_put((ops.pairs[:, 0], ops.pairs[:, 1]), ops.pvals.detach(),
                            accumulate=True)
        A = (0.5 * (A + A.T)).numpy()
        W = Wu.detach().to(torch.float64).numpy()
    with blas_threads(torch.get_num_threads()):
        pts = certify_growth(A, W, r, (0.75 * eta, 1.15 * eta), 0.625)
    return min(n, interp_degree(tau, half_width, r, tol, pts)[0]) if pts else n


def _cheb_interp_matrix(nodes_n: int, half_width: float, s: np.ndarray):
    """Nodes (N+1,) and (len(s), N+1) barycentric Lagrange weights of the N+1 Chebyshev
    points of the 2nd kind on [−h, h], evaluated at ``s`` (exact at the nodes)."""
    j = np.arange(nodes_n + 1)
    nodes = half_width * np.cos(np.pi * j / nodes_n)  # h … −h
    w = (-1.0) ** j
    w[0] *= 0.5
    w[-1] *= 0.5
    d = s[:, None] - nodes[None, :]
    hit = np.isclose(d, 0.0, rtol=0.0, atol=1e-14 * max(half_width, 1.0))
    d = np.where(hit, 1.0, d)
    L = w[None, :] / d
    L /= L.sum(axis=1, keepdims=True)
    rows = hit.any(axis=1)
    L[rows] = hit[rows].astype(np.float64)
    return nodes, L


def _propagate_pulses(ops, Wu, v0, tau: torch.Tensor, s: torch.Tensor, r: float, hi: float,
                      tol: float):
    """exp(−τ_c (A + i s_c W_u)) c for every column c of ``v0`` (all columns start at c), as
    a small real basis per group of columns: v(s_c) = V_re ℓ_re,c + i V_im ℓ_im,c.

    Columns sharing one pulse duration τ are computed at the N+1 Chebyshev nodes of
    [−S, S] (S = max |s_c|) and interpolated: v(s) is entire in s (the degree comes from a
    rigorous bound, see :func:`.chebyshev.interp_degree`), and, as A, W_u and c are real,
    v(−s) = conj(v(s)) — so only the ⌈N/2⌉ positive nodes are propagated, s = 0 (for even
    N) is the exact diagonal exponential, and the negative ones are conjugates. This is used
    whenever it needs fewer propagated columns than the distinct |s_c|: for the paper's
    protocol 63 columns per direction become 9. The interpolation is linear in the node
    values, so gradients flow through it exactly. Other groups are propagated column by
    column (ℓ = identity).

    Returns
    -------
    (groups, number of terms); groups: list of (cols (G,) int array, V_re (n_dir, k, n_re),
    V_im (n_dir, k, n_im), ℓ_re (G, n_re), ℓ_im (G, n_im)).
    """
    tau_np = tau.detach().numpy()
    s_np = s.detach().numpy()
    dt = v0.dtype
    n_terms = 0
    groups = []
    for t in np.unique(tau_np):
        cols = np.nonzero(tau_np == t)[0]
        s_c = s_np[cols]
        h = float(np.abs(s_c).max())
        n_distinct = np.unique(np.abs(s_c)).size
        n_nodes = _interp_nodes(float(t), h, r, 0.1 * tol, ops, Wu) if h > 0 else 0
        # nodes j and N − j are ±s_j: the first ⌈N/2⌉ are propagated; for even N the middle
        # node is s = 0
        half = (n_nodes + 1) // 2
        zero = n_nodes % 2 == 0
        if 0 < half < n_distinct:
            nodes, L = _cheb_interp_matrix(n_nodes, h, s_c)
            # s = 0: the exact diagonal exponential, or one more column when A is coupled
            n_prop = half + 1 if (zero and not ops.exact_gap) else half
            tau_n = torch.full((n_prop,), float(t), dtype=torch.float64)
            # an error ε_j at node j (and its conjugate at −s_j) reaches the measurement c
            # as (|L_cj| + |L_c,N−j|)·ε_j: 0.9·tol for these, 0.1·tol for the interpolation
            wts = np.abs(L[:, :n_prop]).copy()
            wts[:, :half] += np.abs(L[:, n_nodes:n_nodes - half:-1])
            vn, m = _propagate(ops, Wu, v0[..., :n_prop, :], tau_n,
                               torch.as_tensor(nodes[:n_prop].copy()), r, hi, 0.9 * tol,
                               weights=wts)
            # fold the weight of node N − j (= −s_j) onto node j: real part even, imaginary odd
            flip = L[:, n_nodes:n_nodes - half:-1]
            l_re, l_im = L[:, :half] + flip, L[:, :half] - flip
            V_re, V_im = vn[:, :, :half, 0], vn[:, :, :half, 1]
            if zero:
                if ops.exact_gap:
                    v_zero = _gap(ops, v0[..., :1, :], tau_n[:1])[..., 0]  # (n_dir, k, 1)
                else:
                    v_zero = vn[:, :, half:half + 1, 0]
                V_re = torch.cat([V_re, v_zero], dim=2)
                l_re = np.concatenate([l_re, L[:, half:half + 1]], axis=1)
        else:
            part, m = _propagate(ops, Wu, v0[..., cols, :], tau[cols], s[cols], r, hi, tol)
            V_re, V_im = part[..., 0], part[..., 1]
            l_re = l_im = np.eye(cols.size)
        n_terms += m
        groups.append((cols, V_re, V_im, torch.as_tensor(l_re, dtype=dt),
                       torch.as_tensor(l_im, dtype=dt)))
    return groups, n_terms


def _pulse_blocks(groups, C: int) -> torch.Tensor:
    """The pulse outputs v (n_dir, k, C, 2) from :func:`_propagate_pulses`' groups."""
    parts = [torch.stack([V_re @ l_re.T, V_im @ l_im.T], dim=-1)
             for _, V_re, V_im, l_re, l_im in groups]
    order = np.concatenate([g[0] for g in groups])
    out = torch.cat(parts, dim=2)
    if np.array_equal(order, np.arange(C)):
        return out
    return out[:, :, torch.as_tensor(np.argsort(order))]


def _pulse_signal(ops, groups, gaps: np.ndarray, C: int) -> torch.Tensor:
    """S_c = v_cᴴ exp(−τ_c A) v_c, (n_dir, C), for PGSE-like columns (gap τ_c after the first
    pulse), through the Gram matrices of each group's basis: ℓ_reᵀ (V_reᵀ G V_re) ℓ_re +
    ℓ_imᵀ (V_imᵀ G V_im) ℓ_im with G = exp(−τA) symmetric, so S is real. This replaces
    elementwise work on the (n_dir, k, C, 2) block by products with the 9–10 basis
    vectors."""
    pieces, order = [], []
    for cols, V_re, V_im, l_re, l_im in groups:
        g_c = gaps[cols]
        for gv in np.unique(g_c):
            sel = np.nonzero(g_c == gv)[0]
            G_re, G_im = _gram(ops, V_re, gv), _gram(ops, V_im, gv)
            lr, li = l_re[sel], l_im[sel]
            pieces.append(torch.einsum("ci,uij,cj->uc", lr, G_re, lr)
                          + torch.einsum("ci,uij,cj->uc", li, G_im, li))
            order.append(cols[sel])
    order = np.concatenate(order)
    out = torch.cat(pieces, dim=1)
    if np.array_equal(order, np.arange(C)):
        return out
    return out[:, torch.as_tensor(np.argsort(order))]


def signal_from_operators(ops: ProjectedOperators, sequences: Sequence[Waveform],
                          bvalues_ms_per_um2, directions, *, normalize: bool = True,
                          return_complex: bool = False, tol: float = 1e-9,
                          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Signal (n_seq, n_b, n_dir) from projected operators.

    Internal units: b in ms/µm² (= 1e-3 × s/mm²). ``dtype`` is the precision of the
    propagation (float64 default; float32 is ≈ 2× faster with ≈ 1e-6 relative error).
    """
    sequences = _as_sequences(sequences)
    directions = _as_directions(directions)
    bvals = _as_bvalues(bvalues_ms_per_um2)
    n_seq, n_b, n_dir = len(sequences), bvals.shape[0], directions.shape[0]
    C = n_seq * n_b
    k = ops.k
    Wu = torch.einsum("nd,dij->nij", directions.to(ops.W.dtype), ops.W)
    r = float(ops.extent_along(directions.detach()).max())
    # upper bound of the numerical range of A (positive semi-definite): Gershgorin
    lam_hi = float(ops.lam.detach().max())
    if ops.pairs.numel():
        rows = torch.zeros(k, dtype=torch.float64).index_add(0, ops.pairs[:, 0],
                                                              ops.pvals.detach().abs())
        lam_hi = float((ops.lam.detach() + rows).max())
    hi = max(lam_hi, 1e-12) * (1 + 1e-9) + 1e-12
    bfac = torch.tensor([w.b_factor_ms3 for w in sequences], dtype=torch.float64)
    if torch.any(bfac <= 0) and torch.any(bvals > 0):
        raise InputError("a waveform with zero b-factor (no diffusion weighting) cannot reach "
                         "b > 0")
    q = torch.sqrt(bvals[None, :] / bfac.clamp_min(1e-300)[:, None])  # (n_seq, n_b)
    q_col = q.reshape(C)
    seq_of_col = torch.arange(n_seq).repeat_interleave(n_b)
    c = ops.c.to(dtype)
    # blocks (n_dir, k, C, 2): real and imaginary parts interleaved (see .chebyshev)
    v0 = torch.zeros((n_dir, k, C, 2), dtype=dtype)
    v0 = v0 + torch.stack([c, torch.zeros_like(c)], dim=1)[None, :, None, :]
    T = torch.tensor([w.echo_time_ms for w in sequences], dtype=torch.float64)[seq_of_col]
    n_terms = 0

    def gap(v, tau):
        nonlocal n_terms
        if ops.exact_gap:
            return _gap(ops, v, tau)
        v, m = _propagate(ops, Wu, v, tau, torch.zeros_like(tau), r, hi, tol)
        n_terms += m
        return v

    pgse = all(w.is_pgse_like() for w in sequences)
    if pgse:
        d1 = torch.tensor([w.durations_ms[0] for w in sequences], dtype=torch.float64)
        dgap = torch.tensor([w.durations_ms[1] for w in sequences], dtype=torch.float64)
        a1 = torch.tensor([w.amplitudes[0] for w in sequences], dtype=torch.float64)
        groups, n_terms = _propagate_pulses(ops, Wu, v0, d1[seq_of_col],
                                            q_col * a1[seq_of_col], r, hi, tol)
        if ops.exact_gap:
            s_re = _pulse_signal(ops, groups, dgap[seq_of_col].numpy(), C)
            s_im = torch.zeros_like(s_re)
        else:
            v = _pulse_blocks(groups, C)
            g = gap(v, dgap[seq_of_col])
            # S = conj(v)ᵀ G v: real part vᵣ·Gvᵣ + vᵢ·Gvᵢ, imaginary part vᵣ·Gvᵢ − vᵢ·Gvᵣ
            s_re = (v * g).sum(dim=(1, 3))
            s_im = (v[..., 0] * g[..., 1] - v[..., 1] * g[..., 0]).sum(dim=1)
    else:
        J = max(len(w.durations_ms) for w in sequences)
        dur = np.zeros((n_seq, J))
        amp = np.zeros((n_seq, J))
        for i, w in enumerate(sequences):
            dur[i, :len(w.durations_ms)] = w.durations_ms
            amp[i, :len(w.amplitudes)] = w.amplitudes
        v = v0
        for jseg in range(J):
            tau = torch.as_tensor(dur[:, jseg])[seq_of_col]
            a = torch.as_tensor(amp[:, jseg])[seq_of_col]
            if np.all(amp[:, jseg] == 0):
                v = gap(v, tau)
            elif float(tau.max()) > 0:
                v, m = _propagate(ops, Wu, v, tau, q_col * a, r, hi, tol)
                n_terms += m
        s_re = (c[None, :, None] * v[..., 0]).sum(dim=1)
        s_im = (c[None, :, None] * v[..., 1]).sum(dim=1)
    S = torch.complex(s_re.to(torch.float64), s_im.to(torch.float64))  # (n_dir, C)
    m0 = torch.tensor([w.zeroth_moment_ms for w in sequences], dtype=torch.float64)[seq_of_col]
    if torch.any(m0 != 0):
        shift = directions.to(torch.float64) @ ops.center  # (n_dir,)
        S = S * torch.exp(-1j * shift[:, None] * (q_col * m0)[None, :])
    S = S.reshape(n_dir, n_seq, n_b).permute(1, 2, 0)
    logger.debug("matrix formalism: k=%d, %d Chebyshev terms, %d columns × %d directions",
                 k, n_terms, C, n_dir)
    if normalize:
        g0 = gap(v0[:1], T)
        s0 = (c[:, None] * g0[0, :, :, 0]).sum(dim=0).to(torch.float64)  # (C,)
        S = S / s0.reshape(n_seq, n_b)[:, :, None]
    return S if return_complex else S.real


# --------------------------------------------------------------------------- public entry

def _as_sequences(sequences) -> list[Waveform]:
    if isinstance(sequences, Waveform):
        return [sequences]
    seqs = list(sequences)
    if not seqs or not all(isinstance(w, Waveform) for w in seqs):
        raise InputError("sequences must be a Waveform (e.g. PGSE(5, 10)) or a non-empty list "
                         "of them")
    return seqs


def _as_bvalues(bvalues) -> torch.Tensor:
    b = torch.as_tensor(bvalues, dtype=torch.float64).reshape(-1).detach()
    if b.numel() == 0 or torch.any(b < 0) or not torch.all(torch.isfinite(b)):
        raise InputError(f"b-values must be a non-empty list of finite values >= 0 s/mm²; "
                         f"got {b.tolist()[:8]}")
    return b


def _as_directions(directions) -> torch.Tensor:
    u = torch.as_tensor(directions, dtype=torch.float64)
    if u.ndim == 1:
        u = u[None]
    if u.ndim != 2 or u.shape[1] != 3:
        raise InputError(f"directions must have shape (n_dir, 3); got {tuple(u.shape)}")
    nrm = u.norm(dim=1, keepdim=True)
    if torch.any(nrm == 0):
        raise InputError("a gradient direction is the zero vector; give unit directions "
                         "(b = 0 is a b-value, not a direction)")
    return u / nrm


def simulate_signal(mesh, sequences, bvalues, directions, diffusivity: float = 2e-3,
                    n_eig: int | None = None, length_scale_um: float | None = None, *,
                    t2_ms=None, permeability_um_per_ms: float = 0.0, normalize: bool = True,
                    return_complex: bool = False, method: str = "auto", tol: float = 1e-9,
                    gap_rel: float = 1e-6, precision: str = "double") -> torch.Tensor:
    """Diffusion MRI signal of a tetrahedral mesh by the matrix formalism (differentiable).

    Parameters
    ----------
    mesh : Mesh — vertices (V, 3) in µm; gradients flow to ``mesh.vertices``. To simulate
        decoded vertex positions ``v``: ``simulate_signal(mesh.with_vertices(v), ...)``.
    sequences : Waveform or list of Waveform — e.g. ``[PGSE(5, 10), PGSE(5, 25)]`` (ms).
    bvalues : (n_b,) — s/mm².
    directions : (n_dir, 3) — gradient directions (normalised here).
    diffusivity : float (or per-compartment list) — mm²/s (default 2e-3).
    n_eig : int, optional — fixed number of eigenpairs (use while optimising).
    length_scale_um : float, optional — when ``n_eig`` is None keep λ ≤ D·π²/ℓ² (default
        ℓ = 1 µm), without splitting a cluster of equal eigenvalues.
    t2_ms : float or per-compartment list, optional — T2 in ms (a scalar cancels when
        normalised).
    permeability_um_per_ms : float — κ at compartment interfaces, µm/ms (1e-5 m/s = 0.01).
    normalize : bool — divide by the b = 0 signal of each sequence (default True); when
        False the signal is in µm³ (S(b=0) = volume without T2).
    return_complex : bool — return the complex signal (default: its real part).
    method : "auto" | "dense" | "sparse" — eigen solver (dense up to 2,500 vertices).
    tol : float — bound on the propagation error per segment, relative to S(b=0).
    gap_rel : float — eigenvalues closer than gap_rel·λ_max are one cluster.
    precision : "double" (default) or "single" — arithmetic of the propagation in the small
        eigenbasis (the eigenproblem is always float64); "single" is ≈ 3× faster, with
        ≈ 1e-6 relative error in signal and gradients.

    Returns
    -------
    Tensor, shape (n_seq, n_b, n_dir), float64 (complex128 with ``return_complex``).
    """
    seqs = _as_sequences(sequences)
    b = _as_bvalues(bvalues) * B_SCALE
    u = _as_directions(directions)
    ops = project_operators(mesh, diffusivity, n_eig, length_scale_um, t2_ms=t2_ms,
                            permeability_um_per_ms=permeability_um_per_ms, method=method,
                            gap_rel=gap_rel)
    if precision not in ("double", "single"):
        raise InputError(f"precision must be 'double' or 'single'; got {precision!r}")
    dtype = torch.float64 if precision == "double" else torch.float32
    return signal_from_operators(ops, seqs, b, u, normalize=normalize,
                                 return_complex=return_complex,
                                 tol=max(tol, 1e-6) if dtype == torch.float32 else tol,
                                 dtype=dtype)
