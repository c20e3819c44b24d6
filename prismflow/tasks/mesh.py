"""Mesh reconstruction (ReMiDi) as a pydra task: signal + protocol files in, mesh + report out."""

from __future__ import annotations

from pathlib import Path

from fileformats.generic import File
from ._define import python_task


@python_task(outputs=["mesh", "report"])
def ReconstructMesh(signal: File, protocol: File, prior: str = "bend", n_iter: int = 150,
                    reference: File | None = None) -> tuple[File, File]:
    """Reconstruct an axon mesh from a b0-normalised signal (``prismflow-mesh reconstruct``).

    Writes ``mesh_recon/mesh.vtu`` (µm) and ``mesh_recon/reconstruction.json`` (loss and
    Chamfer curves, settings) in the task's directory; ``n_iter`` latent-optimisation steps.
    """
    from prismflow.remidi import ReconstructionConfig, reconstruct_files

    out = reconstruct_files(signal, protocol, Path("mesh_recon").absolute(), prior=prior,
                            config=ReconstructionConfig(n_iter=n_iter),
                            reference_path=reference)
    return out["mesh"], out["json"]
