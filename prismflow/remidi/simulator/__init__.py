"""The differentiable Bloch–Torrey simulator on tetrahedral meshes (matrix formalism).

Room layout: the mesh type (:mod:`.mesh`), meshers (:mod:`.meshers`), mesh file I/O
(:mod:`.mesh_io`), waveforms (:mod:`.sequences`), P1 finite elements (:mod:`.fem`), the
differentiable eigenproblem (:mod:`.eigen`), the matrix-formalism signal
(:mod:`.matrix_formalism`), the ``BlochTorreySimulator`` object (:mod:`.model`) and exact
references for validation (:mod:`.analytic`). Nothing here knows about reconstruction.

Units at the public boundary: lengths µm, times ms, b-values s/mm², diffusivities mm²/s.
"""

from .mesh import Mesh, mesh_quality, tetra_volumes, boundary_faces
from .meshers import cylinder_mesh, coaxial_cylinder_mesh, box_mesh, equal_area_radius
from .mesh_io import load_mesh, save_mesh
from .sequences import Waveform, PGSE, DoublePGSE, OGSE, PiecewiseConstant
from .matrix_formalism import (simulate_signal, eigen_count, project_operators,
                               signal_from_operators, ProjectedOperators)
from .eigen import generalized_eigh
from .model import BlochTorreySimulator

__all__ = ["Mesh", "mesh_quality", "tetra_volumes", "boundary_faces", "cylinder_mesh",
           "coaxial_cylinder_mesh", "box_mesh", "equal_area_radius", "load_mesh", "save_mesh",
           "Waveform", "PGSE", "DoublePGSE", "OGSE", "PiecewiseConstant", "simulate_signal",
           "eigen_count", "project_operators", "signal_from_operators", "ProjectedOperators",
           "generalized_eigh", "BlochTorreySimulator"]
