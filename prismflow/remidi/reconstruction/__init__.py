"""ReMiDi mesh reconstruction: optimise a spectral auto-encoder's latent through the simulator.

Room layout: deformation families and the paper's splits (:mod:`.deform`), the mesh-Laplacian
spectral basis (:mod:`.spectral`), the auto-encoder model (:mod:`.sae`), its training
(:mod:`.sae_training`), finding or training its weights (:mod:`.weights`), acquisition
protocols (:mod:`.protocol`), the latent optimisation (:mod:`.reconstruct`) and the MLP
baseline (:mod:`.mlp`). It uses the simulator
(:mod:`prismflow.remidi.simulator`) only through its public API.
"""

from .deform import Deformation, bend_twist, bead, fan
from .spectral import SpectralBasis, graph_laplacian
from .sae import SpectralAutoEncoder
from .weights import load_sae
from .sae_training import SAETrainConfig, train_sae
from .protocol import Protocol, paper_protocol
from .reconstruct import (MeshReconstruction, ReconstructionConfig, ReconstructionResult,
                          reconstruct, reconstruct_from_signal, reconstruct_files)
from .mlp import SignalToMeshMLP, train_mlp

__all__ = ["Deformation", "bend_twist", "bead", "fan", "SpectralBasis", "graph_laplacian",
           "SpectralAutoEncoder", "load_sae", "SAETrainConfig", "train_sae", "Protocol",
           "paper_protocol", "MeshReconstruction", "ReconstructionConfig",
           "ReconstructionResult", "reconstruct", "reconstruct_from_signal",
           "reconstruct_files", "SignalToMeshMLP", "train_mlp"]
