"""Mesh file I/O through meshio (any format it knows: ``.vtu``, ``.msh``, ``.xdmf`` …).

Units: µm are assumed on read and written as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...io.errors import InputError
from .mesh import Mesh, orient_tetrahedra as _orient

__all__ = ["save_mesh", "load_mesh"]


# --------------------------------------------------------------------------- I/O

def save_mesh(mesh: Mesh, path: str | Path) -> None:
    """Write a mesh with meshio (format from the suffix); compartments go to the cell data
    ``compartment``. Same as ``mesh.save(path)``."""
    mesh.save(path)


def load_mesh(path: str | Path) -> Mesh:
    """Read the tetrahedra of a mesh file with meshio (µm assumed); orientation is fixed."""
    import meshio

    path = Path(path)
    if not path.exists():
        raise InputError(f"mesh file {path} does not exist")
    try:
        m = meshio.read(str(path))
    except Exception as err:  # meshio raises several types for unreadable files
        raise InputError(f"{path}: meshio could not read it ({err})") from err
    tets, comp = [], []
    for i, block in enumerate(m.cells):
        if block.type == "tetra":
            tets.append(block.data)
            cd = m.cell_data.get("compartment")
            comp.append(cd[i] if cd is not None else np.zeros(len(block.data), np.int64))
    if not tets:
        raise InputError(f"{path} holds no tetrahedra (cell types: "
                         f"{[b.type for b in m.cells]})")
    verts = np.asarray(m.points, dtype=np.float64)
    tets = _orient(verts, np.concatenate(tets).astype(np.int64))
    return Mesh(torch.as_tensor(verts), torch.as_tensor(tets),
                torch.as_tensor(np.concatenate(comp).astype(np.int64)))
