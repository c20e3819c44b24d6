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
from .simulator import BlochTorreySimulator

__all__ = ["Mesh", "cylinder_mesh", "coaxial_cylinder_mesh", "box_mesh", "equal_area_radius",
           "load_mesh", "save_mesh", "mesh_quality", "Waveform", "PGSE", "DoublePGSE", "OGSE",
           "PiecewiseConstant", "simulate_signal", "eigen_count", "project_operators",
           "signal_from_operators", "ProjectedOperators", "generalized_eigh",
           "BlochTorreySimulator"]

# --- ReMiDi mesh reconstruction (issue 6): deformations, spectral basis, SAE, latent optimisation
from .deform import Deformation, bend_twist, bead, fan  # noqa: E402
from .spectral import SpectralBasis, graph_laplacian  # noqa: E402
from .sae import SpectralAutoEncoder, load_sae, train_sae  # noqa: E402
from .protocol import Protocol, paper_protocol  # noqa: E402
from .reconstruct import (MeshReconstruction, ReconstructionConfig,  # noqa: E402
                          ReconstructionResult, reconstruct, reconstruct_from_signal,
                          reconstruct_files)
from .mlp import SignalToMeshMLP, train_mlp  # noqa: E402

__all__ += ["Deformation", "bend_twist", "bead", "fan", "SpectralBasis", "graph_laplacian",
            "SpectralAutoEncoder", "load_sae", "train_sae", "Protocol", "paper_protocol",
            "MeshReconstruction", "ReconstructionConfig", "ReconstructionResult", "reconstruct",
            "reconstruct_from_signal", "reconstruct_files", "SignalToMeshMLP", "train_mlp"]
