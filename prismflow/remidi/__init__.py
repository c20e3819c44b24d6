"""prismflow.remidi: a differentiable Bloch–Torrey simulator on tetrahedral meshes (matrix
formalism) and ReMiDi mesh reconstruction.

Units at the public boundary: lengths µm, times ms, b-values s/mm², diffusivities mm²/s.
"""

from .meshes import (Mesh, cylinder_mesh, coaxial_cylinder_mesh, box_mesh, equal_area_radius,
                     load_mesh, save_mesh, mesh_quality)
from .sequences import Waveform, PGSE, DoublePGSE, OGSE, PiecewiseConstant
from .matrix_formalism import (simulate_signal, eigen_count, project_operators,
                               signal_from_operators, ProjectedOperators)
from .eigen import generalized_eigh

__all__ = ["Mesh", "cylinder_mesh", "coaxial_cylinder_mesh", "box_mesh", "equal_area_radius", "load_mesh",
           "save_mesh", "mesh_quality", "Waveform", "PGSE", "DoublePGSE", "OGSE",
           "PiecewiseConstant", "simulate_signal", "eigen_count", "project_operators",
           "signal_from_operators", "ProjectedOperators", "generalized_eigh"]
