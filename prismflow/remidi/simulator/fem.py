"""P1 finite-element matrices on tetrahedra, batched over elements and differentiable with
respect to the vertex coordinates.

Element matrices are returned as (T, 4, 4) tensors (torch autograd flows through them); the
global matrices are the scatter-sums of those blocks. ``assemble_dense`` (torch, for small
meshes) and ``assemble_scipy`` (CSR, no autograd, for solvers) build them; the eigen solver
and the projections in :mod:`.matrix_formalism` work on the element blocks directly so that
no global sparse matrix needs an autograd path.

Matrices (Galerkin, P1 basis ϕ_i):

- mass        M_ij = ∫ ϕ_i ϕ_j                                  (µm³)
- stiffness   S_ij = ∫ ∇ϕ_i · D ∇ϕ_j                            (µm³/ms with D in µm²/ms)
- relaxation  R_ij = ∫ ϕ_i ϕ_j / T2                             (µm³/ms)
- coordinate  (J_d)_ij = ∫ x_d ϕ_i ϕ_j, d ∈ {x, y, z}            (µm⁴)
- flux        Q: κ ∫_Γ [u][v] over permeable interfaces Γ, with the jump [u] between the two
  coincident copies of an interface vertex                       (µm³/ms with κ in µm/ms)

Units inside the simulator: µm, ms, D in µm²/ms (1 mm²/s = 1e3 µm²/ms), κ in µm/ms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

logger = logging.getLogger(__name__)

__all__ = ["ElementGeometry", "element_geometry", "mass_blocks", "stiffness_blocks",
           "coordinate_blocks", "relaxation_blocks", "flux_blocks", "FEMBlocks",
           "assemble_blocks", "assemble_dense", "assemble_scipy", "apply_blocks",
           "project_blocks"]

@dataclass
class ElementGeometry:
    """Per-tetrahedron volume (T,) in µm³ and barycentric gradients (T, 4, 3) in 1/µm."""

    volume: torch.Tensor
    grad: torch.Tensor
    points: torch.Tensor


def element_geometry(vertices: torch.Tensor, tetrahedra: torch.Tensor) -> ElementGeometry:
    """Volumes and barycentric-coordinate gradients of every tetrahedron (batched)."""
    p = vertices[tetrahedra]  # (T, 4, 3)
    d = (p[:, 1:] - p[:, :1])  # rows are edge vectors x_i - x_0, (T, 3, 3)
    det = torch.linalg.det(d)
    inv = torch.linalg.inv(d)  # columns: gradients of λ_1..λ_3
    g123 = inv.transpose(1, 2)  # (T, 3, 3), row i = ∇λ_{i+1}
    g0 = -g123.sum(dim=1, keepdim=True)
    grad = torch.cat([g0, g123], dim=1)
    n_bad = int((det.detach() <= 0).sum())
    if n_bad:
        logger.warning("%d of %d tetrahedra are inverted or flat (signed volume <= 0); "
                       "their |volume| is used", n_bad, det.shape[0])
    return ElementGeometry(volume=det.abs() / 6.0, grad=grad, points=p)


def mass_blocks(geo: ElementGeometry) -> torch.Tensor:
    """Consistent P1 mass blocks vol/20·(1 + δ_ij), (T, 4, 4)."""
    base = torch.full((4, 4), 1.0, dtype=geo.volume.dtype) + torch.eye(4, dtype=geo.volume.dtype)
    return geo.volume[:, None, None] * base / 20.0


def stiffness_blocks(geo: ElementGeometry, diffusivity) -> torch.Tensor:
    """Stiffness blocks vol·∇ϕ_i·D∇ϕ_j, (T, 4, 4).

    ``diffusivity`` in µm²/ms: a float, a (T,) tensor (per element), a (3, 3) tensor or a
    (T, 3, 3) tensor (anisotropic).
    """
    g = geo.grad
    D = torch.as_tensor(diffusivity, dtype=g.dtype)
    if D.ndim == 0 or D.ndim == 1:
        Dv = D if D.ndim == 0 else D[:, None, None]
        return (geo.volume[:, None, None] * Dv) * (g @ g.transpose(1, 2))
    if D.ndim == 2:
        D = D.expand(g.shape[0], 3, 3)
    return geo.volume[:, None, None] * (g @ D @ g.transpose(1, 2))


def coordinate_blocks(geo: ElementGeometry, center: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate-weighted mass blocks ∫ x_d ϕ_i ϕ_j, (3, T, 4, 4).

    Exact for P1: vol/120·(1 + δ_ij)·(Σ_k x_k + x_i + x_j). ``center`` (3,) is subtracted
    from the coordinates first (J_d − c_d M).
    """
    x = geo.points  # (T, 4, 3)
    if center is not None:
        x = x - center
    s = x.sum(dim=1)  # (T, 3)
    xi = x.permute(2, 0, 1)  # (3, T, 4)
    tot = s.T[:, :, None, None] + xi[:, :, :, None] + xi[:, :, None, :]
    base = torch.ones(4, 4, dtype=x.dtype) + torch.eye(4, dtype=x.dtype)
    return tot * base * (geo.volume[None, :, None, None] / 120.0)


def relaxation_blocks(geo: ElementGeometry, t2_ms) -> torch.Tensor:
    """Relaxation blocks M_e / T2_e, (T, 4, 4); ``t2_ms`` a float or (T,) tensor in ms."""
    t2 = torch.as_tensor(t2_ms, dtype=geo.volume.dtype)
    m = mass_blocks(geo)
    return m / (t2 if t2.ndim == 0 else t2[:, None, None])


def flux_blocks(vertices: torch.Tensor, interfaces: torch.Tensor, permeability) -> tuple:
    """Interface flux blocks for Q = κ ∫_Γ [u][v].

    Parameters
    ----------
    vertices : (V, 3) µm; interfaces : (F, 2, 3) coincident triangles (side a, side b);
    permeability : κ in µm/ms, float or (F,).

    Returns
    -------
    (blocks (F, 6, 6), index (F, 6)) — element blocks on the six vertices [a0 a1 a2 b0 b1 b2].
    """
    ia, ib = interfaces[:, 0], interfaces[:, 1]
    p = vertices[ia]
    area = 0.5 * torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]).norm(dim=-1)
    kappa = torch.as_tensor(permeability, dtype=vertices.dtype)
    w = area * kappa / 12.0
    ms = torch.ones(3, 3, dtype=vertices.dtype) + torch.eye(3, dtype=vertices.dtype)
    sign = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=vertices.dtype)
    blk = torch.kron(sign, ms)  # (6, 6)
    return w[:, None, None] * blk, torch.cat([ia, ib], dim=1)


@dataclass
class FEMBlocks:
    """Element blocks of one mesh, all differentiable w.r.t. the vertices.

    ``A`` is the operator of the eigenproblem (S + Q), split into tetra blocks ``S`` (T, 4, 4)
    and interface blocks ``Q`` (F, 6, 6) with their index ``Q_index`` (F, 6); ``M`` mass,
    ``R`` relaxation (or None), ``J`` (3, T, 4, 4) coordinate blocks about ``center``.
    """

    tetrahedra: torch.Tensor
    n_vertices: int
    S: torch.Tensor
    M: torch.Tensor
    J: torch.Tensor
    center: torch.Tensor
    R: torch.Tensor | None = None
    Q: torch.Tensor | None = None
    Q_index: torch.Tensor | None = None


def assemble_blocks(mesh, diffusivity_um2_per_ms, *, t2_ms=None, permeability_um_per_ms=0.0,
                    center: torch.Tensor | None = None) -> FEMBlocks:
    """All element blocks of ``mesh`` (units µm, ms).

    ``diffusivity_um2_per_ms`` may be a float, a per-compartment sequence, or a (3, 3) tensor;
    ``t2_ms`` likewise (None: no relaxation). ``center`` defaults to the volume centroid
    (differentiable), about which the coordinate matrices are taken.
    """
    v, t = mesh.vertices, mesh.tetrahedra
    geo = element_geometry(v, t)
    comp = mesh.compartments
    D = _per_element(diffusivity_um2_per_ms, comp, v.dtype)
    S = stiffness_blocks(geo, D)
    M = mass_blocks(geo)
    if center is None:
        centroid = (geo.points.mean(dim=1) * geo.volume[:, None]).sum(0) / geo.volume.sum()
        center = centroid
    J = coordinate_blocks(geo, center)
    R = None
    if t2_ms is not None:
        R = relaxation_blocks(geo, _per_element(t2_ms, comp, v.dtype))
    Q = Qi = None
    if mesh.interfaces.numel():
        kappa = float(permeability_um_per_ms) if np.isscalar(permeability_um_per_ms) else None
        if kappa is None or kappa != 0.0:
            Q, Qi = flux_blocks(v, mesh.interfaces, permeability_um_per_ms)
    return FEMBlocks(tetrahedra=t, n_vertices=int(v.shape[0]), S=S, M=M, J=J, center=center,
                     R=R, Q=Q, Q_index=Qi)


def _per_element(value, comp: torch.Tensor, dtype):
    val = torch.as_tensor(value, dtype=dtype)
    if val.ndim == 1:
        return val[comp]
    return val


def _coo(index: torch.Tensor, blocks: torch.Tensor):
    k = index.shape[1]
    rows = index[:, :, None].expand(-1, k, k).reshape(-1)
    cols = index[:, None, :].expand(-1, k, k).reshape(-1)
    return rows, cols, blocks.reshape(-1)


def assemble_dense(index: torch.Tensor, blocks: torch.Tensor, n: int) -> torch.Tensor:
    """Dense (n, n) scatter-sum of (E, k, k) blocks on (E, k) vertex indices (differentiable)."""
    rows, cols, vals = _coo(index, blocks)
    out = torch.zeros(n * n, dtype=blocks.dtype)
    return out.index_add(0, rows * n + cols, vals).reshape(n, n)


def assemble_scipy(index: torch.Tensor, blocks: torch.Tensor, n: int) -> sp.csr_matrix:
    """CSR (n, n) scatter-sum of (E, k, k) blocks (values detached)."""
    rows, cols, vals = _coo(index, blocks.detach())
    return sp.csr_matrix((vals.numpy(), (rows.numpy(), cols.numpy())), shape=(n, n))


def apply_blocks(index: torch.Tensor, blocks: torch.Tensor, x: torch.Tensor,
                 n: int) -> torch.Tensor:
    """(Σ_e P_eᵀ B_e P_e) x for x of shape (n, K), without forming the matrix (differentiable).

    ``blocks`` may carry a leading batch axis (C, E, k, k), giving (C, n, K).
    """
    xe = x[index]  # (E, k, K)
    y = torch.matmul(blocks, xe)  # (..., E, k, K)
    if blocks.ndim == 4:
        c = blocks.shape[0]
        out = torch.zeros((c, n, x.shape[1]), dtype=y.dtype)
        return out.index_add(1, index.reshape(-1), y.reshape(c, -1, x.shape[1]))
    out = torch.zeros((n, x.shape[1]), dtype=y.dtype)
    return out.index_add(0, index.reshape(-1), y.reshape(-1, x.shape[1]))


#: elements per chunk in the gathers of :func:`project_blocks`' backward (bounds memory)
_CHUNK = 16384
#: up to this many vertices that backward gathers from a dense n × n product instead
_DENSE_GATHER = 1500


def _csr_blocks(index: torch.Tensor, blocks: torch.Tensor, n: int):
    """scipy CSR matrices of (E, k, k) or (C, E, k, k) blocks (values detached)."""
    if blocks.ndim == 3:
        return [assemble_scipy(index, blocks, n)]
    return [assemble_scipy(index, b, n) for b in blocks]


class _ProjectBlocks(torch.autograd.Function):
    """Φᵀ B Φ for B the scatter-sum of element blocks, without (E, k, K) intermediates kept.

    Forward with scipy CSR products; backward: Φ̄ = (B + Bᵀ)-weighted products and
    B̄_e = Φ_e Ḡ Φ_eᵀ gathered per element in chunks.
    """

    @staticmethod
    def forward(ctx, blocks, index, phi):
        n = phi.shape[0]
        mats = _csr_blocks(index, blocks, n)
        ph = phi.detach()
        # sparse × dense in scipy (no BLAS), dense products in torch (its thread setting)
        out = torch.stack([ph.T @ torch.as_tensor(m @ ph.numpy()) for m in mats])
        ctx.mats = mats
        ctx.batched = blocks.ndim == 4
        ctx.save_for_backward(index, phi)
        return out if ctx.batched else out[0]

    @staticmethod
    def backward(ctx, gbar):
        index, phi = ctx.saved_tensors
        gb = gbar if ctx.batched else gbar[None]
        ph = phi.detach()
        phi_bar = torch.zeros_like(phi)
        blocks_bar = []
        n = phi.shape[0]
        for m, g in zip(ctx.mats, gb):
            phi_bar += torch.as_tensor(m @ (ph @ (g + g.T)).numpy())
            U = phi @ g  # (n, K)
            if n <= _DENSE_GATHER:
                # B̄_e[a, b] = (U Φᵀ)[i_a, i_b]: one n × n product and a gather (at 323
                # vertices ≈ 4× faster than the per-element 4 × K · K × 4 products)
                P = U @ phi.T
                blocks_bar.append(P[index[:, :, None], index[:, None, :]])
                continue
            parts = []
            for s in range(0, index.shape[0], _CHUNK):
                idx = index[s:s + _CHUNK]
                parts.append(torch.einsum("eai,ebi->eab", U[idx], phi[idx]))
            blocks_bar.append(torch.cat(parts))
        bb = torch.stack(blocks_bar) if ctx.batched else blocks_bar[0]
        return bb, None, phi_bar


def project_blocks(index: torch.Tensor, blocks: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Φᵀ B Φ, shape (K, K) (or (C, K, K) for batched blocks), differentiable in both.

    Assumes symmetric element blocks (all FEM blocks here are).
    """
    return _ProjectBlocks.apply(blocks, index, phi)
