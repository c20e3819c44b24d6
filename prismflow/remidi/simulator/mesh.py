"""The tetrahedral mesh type of the Bloch–Torrey simulator: connectivity, geometry (volume,
surface area) and an element-quality report.

Units: vertex coordinates in µm, volumes in µm³, areas in µm².
Axis letters: V vertices, T tetrahedra, F faces. Meshers live in :mod:`.meshers`, file I/O in
:mod:`.mesh_io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...io.errors import InputError

__all__ = ["Mesh", "tetra_volumes", "boundary_faces", "mesh_quality", "orient_tetrahedra"]


@dataclass(frozen=True, eq=False)
class Mesh:
    """A tetrahedral mesh with a fixed connectivity.

    Parameters
    ----------
    vertices : Tensor, shape (V, 3), float64 — coordinates in µm (may require grad).
    tetrahedra : Tensor, shape (T, 4), int64 — vertex indices, positively oriented.
    compartments : Tensor, shape (T,), int64, optional — compartment label of each tetrahedron
        (default: all 0, one compartment).
    interfaces : Tensor, shape (F, 2, 3), int64, optional — permeable interfaces between
        compartments: face ``f`` is the triangle ``interfaces[f, 0]`` on one side and the
        coincident triangle ``interfaces[f, 1]`` (same vertex order, duplicated vertices) on
        the other side. Empty for a single-compartment mesh.
    """

    vertices: torch.Tensor
    tetrahedra: torch.Tensor
    compartments: torch.Tensor | None = None
    interfaces: torch.Tensor | None = field(default=None)

    def __post_init__(self):
        v = self.vertices
        if not torch.is_tensor(v):
            v = torch.as_tensor(np.asarray(v), dtype=torch.float64)
        t = torch.as_tensor(self.tetrahedra, dtype=torch.long)
        if v.ndim != 2 or v.shape[1] != 3:
            raise InputError(f"mesh vertices must have shape (V, 3); got {tuple(v.shape)}")
        if t.ndim != 2 or t.shape[1] != 4:
            raise InputError(f"mesh tetrahedra must have shape (T, 4); got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= v.shape[0]):
            raise InputError(f"tetrahedra index vertices outside 0..{v.shape[0] - 1}")
        comp = self.compartments
        comp = (torch.zeros(t.shape[0], dtype=torch.long) if comp is None
                else torch.as_tensor(comp, dtype=torch.long).reshape(-1))
        if comp.shape[0] != t.shape[0]:
            raise InputError(f"{comp.shape[0]} compartment labels for {t.shape[0]} tetrahedra")
        itf = self.interfaces
        itf = (torch.zeros((0, 2, 3), dtype=torch.long) if itf is None
               else torch.as_tensor(itf, dtype=torch.long).reshape(-1, 2, 3))
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "tetrahedra", t)
        object.__setattr__(self, "compartments", comp)
        object.__setattr__(self, "interfaces", itf)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_tetrahedra(self) -> int:
        return int(self.tetrahedra.shape[0])

    @property
    def n_compartments(self) -> int:
        return int(self.compartments.max()) + 1 if self.compartments.numel() else 0

    def with_vertices(self, vertices: torch.Tensor) -> "Mesh":
        """The same connectivity with new vertex positions (µm, shape (V, 3); grads flow)."""
        if tuple(vertices.shape) != tuple(self.vertices.shape):
            raise InputError(f"new vertices have shape {tuple(vertices.shape)}; the mesh has "
                             f"{tuple(self.vertices.shape)}")
        return Mesh(vertices, self.tetrahedra, self.compartments, self.interfaces)

    def volume(self) -> torch.Tensor:
        """Total volume in µm³ (differentiable)."""
        return tetra_volumes(self.vertices, self.tetrahedra).sum()

    def surface_area(self) -> torch.Tensor:
        """Area of the outer boundary in µm² (differentiable; interfaces not counted)."""
        faces = boundary_faces(self.tetrahedra, self.interfaces)
        p = self.vertices[faces]
        return 0.5 * torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]).norm(dim=-1).sum()

    def quality(self) -> dict:
        """Element-quality report, see :func:`mesh_quality`."""
        return mesh_quality(self)

    def save(self, path: str | Path) -> None:
        """Write with meshio (format from the suffix, e.g. ``.vtu``, ``.msh``, ``.xdmf``)."""
        import meshio  # optional at import time; reading lives in mesh_io

        m = meshio.Mesh(self.vertices.detach().cpu().numpy(),
                        [("tetra", self.tetrahedra.cpu().numpy())],
                        cell_data={"compartment": [self.compartments.cpu().numpy()]})
        meshio.write(str(path), m)


def tetra_volumes(vertices: torch.Tensor, tetrahedra: torch.Tensor) -> torch.Tensor:
    """Signed volumes of the tetrahedra, µm³ (positive for positive orientation).

    Returns
    -------
    Tensor, shape (T,).
    """
    p = vertices[tetrahedra]
    d = p[:, 1:] - p[:, :1]
    return torch.linalg.det(d) / 6.0


def boundary_faces(tetrahedra: torch.Tensor,
                   interfaces: torch.Tensor | None = None) -> torch.Tensor:
    """Triangles on the outer boundary (faces owned by exactly one tetrahedron), outward-oriented.

    Interface triangles (duplicated vertices on both sides) are removed.

    Returns
    -------
    Tensor, shape (F, 3), int64.
    """
    t = tetrahedra.detach().cpu().numpy()
    # faces opposite to vertex 0..3, ordered so that the normal points outward for a
    # positively oriented tetrahedron
    local = np.array([[1, 3, 2], [0, 2, 3], [0, 3, 1], [0, 1, 2]])
    faces = t[:, local].reshape(-1, 3)
    key = np.sort(faces, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    keep = counts[inv.reshape(-1)] == 1
    out = faces[keep]
    if interfaces is not None and interfaces.numel():
        itf = np.sort(interfaces.detach().cpu().numpy().reshape(-1, 3), axis=1)
        itf_set = {tuple(r) for r in itf}
        mask = np.array([tuple(r) not in itf_set for r in np.sort(out, axis=1)], dtype=bool)
        out = out[mask]
    return torch.as_tensor(out, dtype=torch.long)


def mesh_quality(mesh: Mesh) -> dict:
    """Element-quality report.

    Quality is the normalised radius ratio q = 3 r_in / r_circ (1 for a regular tetrahedron,
    → 0 for a degenerate one).

    Returns
    -------
    dict with ``n_vertices``, ``n_tetrahedra``, ``volume_um3``, ``surface_um2``,
    ``min_quality``, ``mean_quality``, ``min_volume_um3``, ``n_inverted``, ``edge_min_um``,
    ``edge_max_um``.
    """
    v = mesh.vertices.detach().to(torch.float64)
    t = mesh.tetrahedra
    p = v[t]
    vol = tetra_volumes(v, t)
    # inradius = 3V / total face area
    idx = [(1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2)]
    areas = torch.stack([0.5 * torch.linalg.cross(p[:, b] - p[:, a], p[:, c] - p[:, a]).norm(dim=-1)
                         for a, b, c in idx], dim=1)
    r_in = 3.0 * vol.abs() / areas.sum(dim=1)
    # circumradius: |a|²(b×c) + |b|²(c×a) + |c|²(a×b) / (12 V) with edges from vertex 0
    a, b, c = (p[:, i] - p[:, 0] for i in (1, 2, 3))
    num = ((a * a).sum(-1, keepdim=True) * torch.linalg.cross(b, c)
           + (b * b).sum(-1, keepdim=True) * torch.linalg.cross(c, a)
           + (c * c).sum(-1, keepdim=True) * torch.linalg.cross(a, b))
    r_circ = num.norm(dim=-1) / (12.0 * vol.abs().clamp_min(1e-300))
    q = 3.0 * r_in / r_circ
    edges = torch.stack([(p[:, i] - p[:, j]).norm(dim=-1)
                         for i in range(4) for j in range(i + 1, 4)], dim=1)
    return {
        "n_vertices": mesh.n_vertices,
        "n_tetrahedra": mesh.n_tetrahedra,
        "volume_um3": float(vol.sum()),
        "surface_um2": float(Mesh(v, t, mesh.compartments, mesh.interfaces).surface_area()),
        "min_quality": float(q.min()),
        "mean_quality": float(q.mean()),
        "min_volume_um3": float(vol.min()),
        "n_inverted": int((vol <= 0).sum()),
        "edge_min_um": float(edges.min()),
        "edge_max_um": float(edges.max()),
    }


def orient_tetrahedra(verts: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Tetrahedra (T, 4) reordered so that every signed volume is ≥ 0 (swap of the first two)."""
    p = verts[tets]
    d = p[:, 1:] - p[:, :1]
    neg = np.linalg.det(d) < 0
    tets = tets.copy()
    tets[neg, 0], tets[neg, 1] = tets[neg, 1].copy(), tets[neg, 0].copy()
    return tets
