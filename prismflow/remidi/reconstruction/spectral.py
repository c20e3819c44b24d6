"""Spectral basis of a fixed-connectivity mesh: eigenvectors of its graph Laplacian.

``L = D − A`` where A is the adjacency of the tetrahedral mesh's own edges (the 6 edges of each
tetrahedron) and D the degree matrix. The eigenvectors Φ of L, sorted by eigenvalue, are an
orthonormal basis shared by every mesh with this connectivity: coefficients ``C = Φᵀ P`` and back
``P = Φ C``. Truncating to the first k columns keeps the smooth ("low-frequency") part.

References
----------
Lemeunier et al., "Representation learning of 3D meshes using an autoencoder in the spectral
domain", Computers & Graphics 107 (2022). Khole et al., "ReMiDi", appendix D.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["tetra_edges", "graph_laplacian", "SpectralBasis"]


def tetra_edges(tetrahedra: torch.Tensor | np.ndarray) -> np.ndarray:
    """Unique undirected edges of a tetrahedral mesh.

    Parameters
    ----------
    tetrahedra : (T, 4) integer array — 0-based vertex indices.

    Returns
    -------
    ndarray, shape (E, 2), int64 — each edge once, ``i < j``, sorted.
    """
    tets = np.asarray(torch.as_tensor(tetrahedra).cpu().numpy(), dtype=np.int64)
    if tets.ndim != 2 or tets.shape[1] != 4:
        raise ValueError(f"tetrahedra must have shape (T, 4), got {tets.shape}")
    pairs = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
    e = tets[:, pairs].reshape(-1, 2)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0)


def graph_laplacian(tetrahedra: torch.Tensor | np.ndarray, n_vertices: int) -> np.ndarray:
    """Combinatorial graph Laplacian ``L = D − A`` of the mesh's edge graph.

    Parameters
    ----------
    tetrahedra : (T, 4) integer array, 0-based.
    n_vertices : int — V; every vertex must belong to some tetrahedron.

    Returns
    -------
    ndarray, shape (V, V), float64 — symmetric, rows sum to zero.
    """
    edges = tetra_edges(tetrahedra)
    if edges.size and (edges.min() < 0 or edges.max() >= n_vertices):
        raise ValueError(
            f"tetrahedra index vertices {edges.min()}..{edges.max()} but the mesh has "
            f"{n_vertices} vertices (0-based indices expected)"
        )
    a = np.zeros((n_vertices, n_vertices))
    a[edges[:, 0], edges[:, 1]] = 1.0
    a[edges[:, 1], edges[:, 0]] = 1.0
    deg = a.sum(axis=1)
    if np.any(deg == 0):
        raise ValueError(f"{int(np.sum(deg == 0))} vertices belong to no tetrahedron")
    return np.diag(deg) - a


class SpectralBasis:
    """The first k Laplacian eigenvectors of a mesh connectivity, as a linear transform.

    Parameters
    ----------
    tetrahedra : (T, 4) integer array, 0-based.
    n_vertices : int — V.
    k : int — number of eigenvectors kept (300 in the paper; ``None`` keeps all V).

    Attributes
    ----------
    phi : Tensor, shape (V, k), float64 — orthonormal columns sorted by eigenvalue; each column's
        sign fixed so that its largest-magnitude entry is positive.
    eigenvalues : Tensor, shape (k,), float64.
    """

    def __init__(self, tetrahedra, n_vertices: int, k: int | None = 300) -> None:
        lap = graph_laplacian(tetrahedra, n_vertices)
        k = n_vertices if k is None else int(k)
        if not 1 <= k <= n_vertices:
            raise ValueError(f"k must be in 1..{n_vertices}, got {k}")
        lam, vec = np.linalg.eigh(lap)
        vec = vec[:, :k]
        idx = np.argmax(np.abs(vec), axis=0)
        vec = vec * np.sign(vec[idx, np.arange(k)])
        self.laplacian = torch.from_numpy(lap)
        self.phi = torch.from_numpy(np.ascontiguousarray(vec))
        self.eigenvalues = torch.from_numpy(lam[:k].copy())
        self.n_vertices = n_vertices
        self.k = k

    @classmethod
    def from_arrays(cls, phi: torch.Tensor, eigenvalues: torch.Tensor, laplacian: torch.Tensor):
        """Rebuild from stored arrays (e.g. shipped with SAE weights), no eigensolve."""
        self = cls.__new__(cls)
        self.phi = phi.to(torch.float64)
        self.eigenvalues = eigenvalues.to(torch.float64)
        self.laplacian = laplacian.to(torch.float64)
        self.n_vertices, self.k = self.phi.shape
        return self

    def is_eigenbasis_of(self, tetrahedra, n_vertices: int, *, atol: float = 1e-8) -> bool:
        """True if ``phi`` is an orthonormal eigenbasis of this connectivity's Laplacian."""
        if n_vertices != self.n_vertices:
            return False
        lap = torch.from_numpy(graph_laplacian(tetrahedra, n_vertices))
        resid = lap @ self.phi - self.phi * self.eigenvalues
        ortho = self.phi.T @ self.phi - torch.eye(self.k, dtype=torch.float64)
        return bool(resid.abs().max() < atol and ortho.abs().max() < atol)

    def encode(self, vertices: torch.Tensor) -> torch.Tensor:
        """Spectral coefficients ``C = Φᵀ P``.

        Parameters
        ----------
        vertices : Tensor, shape (V, 3) or (B, V, 3).

        Returns
        -------
        Tensor, shape (k, 3) or (B, k, 3), same dtype as ``vertices``.
        """
        return self.phi.to(vertices.dtype).T @ vertices

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Vertices ``P = Φ C``.

        Parameters
        ----------
        coefficients : Tensor, shape (k, 3) or (B, k, 3).

        Returns
        -------
        Tensor, shape (V, 3) or (B, V, 3).
        """
        return self.phi.to(coefficients.dtype) @ coefficients

    def localisation(self) -> torch.Tensor:
        """Largest squared entry of each basis vector, shape (k,).

        A smooth basis spreads each unit vector over many vertices (values ≪ 1); a vector close
        to 1 lives on one vertex — the signature of a Laplacian built from a mis-indexed edge
        list (isolated or nearly isolated vertices).
        """
        return (self.phi**2).amax(dim=0)
