"""prismflow.remidi: a differentiable Bloch–Torrey simulator on tetrahedral meshes (matrix
formalism, :mod:`prismflow.remidi.simulator`) and ReMiDi mesh reconstruction
(:mod:`prismflow.remidi.reconstruction`). The public names of both rooms are re-exported here.

Units at the public boundary: lengths µm, times ms, b-values s/mm², diffusivities mm²/s.
"""

from .simulator import (Mesh, cylinder_mesh, coaxial_cylinder_mesh, box_mesh,
                        equal_area_radius, load_mesh, save_mesh, mesh_quality, Waveform, PGSE,
                        DoublePGSE, OGSE, PiecewiseConstant, simulate_signal, eigen_count,
                        project_operators, signal_from_operators, ProjectedOperators,
                        generalized_eigh, BlochTorreySimulator)
from .reconstruction import (Deformation, bend_twist, bead, fan, SpectralBasis,
                             graph_laplacian, SpectralAutoEncoder, load_sae, train_sae,
                             Protocol, paper_protocol, MeshReconstruction,
                             ReconstructionConfig, ReconstructionResult, reconstruct,
                             reconstruct_from_signal, reconstruct_files, SignalToMeshMLP,
                             train_mlp)

__all__ = ["Mesh", "cylinder_mesh", "coaxial_cylinder_mesh", "box_mesh", "equal_area_radius",
           "load_mesh", "save_mesh", "mesh_quality", "Waveform", "PGSE", "DoublePGSE", "OGSE",
           "PiecewiseConstant", "simulate_signal", "eigen_count", "project_operators",
           "signal_from_operators", "ProjectedOperators", "generalized_eigh",
           "BlochTorreySimulator",
           "Deformation", "bend_twist", "bead", "fan", "SpectralBasis", "graph_laplacian",
           "SpectralAutoEncoder", "load_sae", "train_sae", "Protocol", "paper_protocol",
           "MeshReconstruction", "ReconstructionConfig", "ReconstructionResult", "reconstruct",
           "reconstruct_from_signal", "reconstruct_files", "SignalToMeshMLP", "train_mlp"]
