"""Spectral auto-encoder (SAE) of fixed-connectivity meshes, after Lemeunier et al. (2022).

A mesh P (V, 3) is projected on the first k = 300 Laplacian eigenvectors (``C = Φᵀ P``, see
:mod:`prismflow.remidi.reconstruction.spectral`); the SAE maps C (k, 3) to a 16-d latent z and back with 1-D
convolutions over the spectral axis and learned pooling / up-sampling matrices
300 → 64 → 32 → 16 (≈ 1e5 parameters). It is trained with the MSE on coefficients, which equals
the vertex MSE of the k-term projection because Φ is orthonormal.

Trained weights are looked up, in order, in ``prismflow/remidi/data/sae-<kind>.pt`` (shipped),
then in the user cache (``$PRISMFLOW_CACHE`` or ``$XDG_CACHE_HOME/prismflow`` or
``~/.cache/prismflow``); if neither holds weights whose stored basis is an eigenbasis of the
current mesh's Laplacian, they are trained (a few CPU minutes, :mod:`.sae_training`) and
cached. Reproduce the shipped files with::

    prismflow-mesh train-sae --kind bend --seed 0 --out prismflow/remidi/data/sae-bend.pt

References
----------
Lemeunier, Denis, Lavoué, Dupont, "Representation learning of 3D meshes using an autoencoder in
the spectral domain", Computers & Graphics 107:131–143 (2022).
Khole et al., "ReMiDi", section 3.2 and appendix D.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["SpectralAutoEncoder", "save_sae", "sae_cache_dir", "SAE_KINDS",
           "template_mesh", "spectral_size", "template_for"]

SAE_KINDS = ("bend", "bead", "fan", "all")

#: axial vertex layers of a family's template mesh when not the default 17: 8 beads on 17
#: layers alias to the straight mesh (sin(πj) = 0 on every layer); 25 layers give 3 layers per
#: bead wavelength at 8 beads, so 2–8 beads are representable (475 vertices, 1,728 tetrahedra)
TEMPLATE_LAYERS = {"bead": 25}
#: spectral coefficients per family (the paper's 300 for 323 vertices; the 475-vertex beading
#: template needs 450 for a 0.014 µm RMS projection error of the straight mesh, 300 give 0.15)
SPECTRAL_K = {"bead": 450}


def template_mesh(kind: str = "bend"):
    """The straight axon mesh (R 3 µm, L 9 µm, 12-gon) a family's SAE is built on."""
    from ..simulator import cylinder_mesh

    layers = TEMPLATE_LAYERS.get(kind)
    return cylinder_mesh(3.0, 9.0) if layers is None else cylinder_mesh(3.0, 9.0,
                                                                        n_layers=layers)


def spectral_size(kind: str = "bend") -> int:
    """Spectral coefficients k of a family's SAE."""
    return SPECTRAL_K.get(kind, 300)


def template_for(sae) -> object:
    """The family template whose vertex count matches ``sae``'s basis (default first)."""
    n = int(sae.phi.shape[0])
    for kind in ("bend", *TEMPLATE_LAYERS):
        mesh = template_mesh(kind)
        if mesh.n_vertices == n:
            return mesh
    raise ValueError(f"no template mesh with {n} vertices; pass template= explicitly")
#: shipped weights (package data of prismflow.remidi)
_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


class _Resample(nn.Module):
    """Learned linear map along the spectral axis: (B, C, n_in) → (B, C, n_out)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class SpectralAutoEncoder(nn.Module):
    """Mesh ↔ 16-d latent through a shared Laplacian basis.

    Parameters
    ----------
    phi : Tensor, shape (V, k) — orthonormal spectral basis (stored as a buffer).
    eigenvalues : Tensor, shape (k,) — its Laplacian eigenvalues (stored, used to check the basis).
    sizes : tuple of int — spectral sizes after each pooling (k → sizes[0] → …), default 64, 32, 16.
    channels : tuple of int — convolution channels at each level, default 16, 32, 64.
    latent_dim : int — size of z (16 in the paper).
    kernel_size : int — 1-D convolution width over the spectral axis.

    Notes
    -----
    Coefficients are standardised per (frequency, axis) with the training set's mean and standard
    deviation (buffers ``coef_mean``, ``coef_std``) before the encoder; the decoder output is
    un-standardised, so :meth:`decode` returns coefficients in µm.
    """

    def __init__(
        self,
        phi: torch.Tensor,
        eigenvalues: torch.Tensor,
        *,
        sizes: tuple[int, ...] = (64, 32, 16),
        channels: tuple[int, ...] = (16, 32, 64),
        latent_dim: int = 16,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        n_vert, k = phi.shape
        self.config = dict(sizes=tuple(sizes), channels=tuple(channels), latent_dim=latent_dim,
                           kernel_size=kernel_size)
        self.meta: dict = {}  # training config and held-out errors (filled by training / loading)
        self.register_buffer("phi", phi.detach().to(torch.float32).clone())
        self.register_buffer("eigenvalues", eigenvalues.detach().to(torch.float64).clone())
        self.register_buffer("coef_mean", torch.zeros(k, 3))
        self.register_buffer("coef_std", torch.ones(k, 3))
        pad = kernel_size // 2
        act = nn.ELU
        enc: list[nn.Module] = []
        c_in, n_in = 3, k
        for c, n in zip(channels, sizes):
            enc += [nn.Conv1d(c_in, c, kernel_size, padding=pad), act(), _Resample(n_in, n)]
            c_in, n_in = c, n
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c_in * n_in, latent_dim))
        self._bottleneck = (c_in, n_in)
        dec: list[nn.Module] = []
        rev_c = list(channels[::-1]) + [3]
        rev_n = list(sizes[::-1][1:]) + [k]
        for i, n in enumerate(rev_n):
            dec += [_Resample(n_in, n), nn.Conv1d(rev_c[i], rev_c[i + 1], kernel_size, padding=pad)]
            if i < len(rev_n) - 1:
                dec.append(act())
            n_in = n
        self.fc_dec = nn.Linear(latent_dim, self._bottleneck[0] * self._bottleneck[1])
        self.decoder = nn.Sequential(*dec)

    # -- coefficients --------------------------------------------------------------------------
    def encode(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Latent of spectral coefficients, (B, k, 3) µm → (B, latent_dim)."""
        x = (coefficients.to(torch.float32) - self.coef_mean) / self.coef_std
        return self.encoder(x.transpose(1, 2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Spectral coefficients of a latent, (B, latent_dim) → (B, k, 3) µm."""
        h = torch.nn.functional.elu(self.fc_dec(z)).view(-1, *self._bottleneck)
        x = self.decoder(h).transpose(1, 2)
        return x * self.coef_std + self.coef_mean

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(coefficients))

    # -- meshes --------------------------------------------------------------------------------
    def encode_mesh(self, vertices: torch.Tensor) -> torch.Tensor:
        """Latent of meshes, (V, 3) or (B, V, 3) µm → (latent_dim,) or (B, latent_dim)."""
        single = vertices.dim() == 2
        v = vertices[None] if single else vertices
        z = self.encode(self.phi.T @ v.to(torch.float32))
        return z[0] if single else z

    def decode_mesh(self, z: torch.Tensor) -> torch.Tensor:
        """Vertices of latents, (latent_dim,) or (B, latent_dim) → (V, 3) or (B, V, 3), µm."""
        single = z.dim() == 1
        c = self.decode(z[None] if single else z)
        v = self.phi @ c
        return v[0] if single else v

    def matches_mesh(self, tetrahedra, n_vertices: int, *, atol: float = 1e-4) -> bool:
        """True if the stored basis is an orthonormal eigenbasis of this mesh's Laplacian."""
        from .spectral import graph_laplacian

        if n_vertices != self.phi.shape[0]:
            return False
        lap = torch.from_numpy(graph_laplacian(tetrahedra, n_vertices))
        phi = self.phi.double()
        resid = lap @ phi - phi * self.eigenvalues
        ortho = phi.T @ phi - torch.eye(phi.shape[1], dtype=torch.float64)
        return bool(resid.abs().max() < atol * 100 and ortho.abs().max() < atol)


def save_sae(model: SpectralAutoEncoder, path: str | os.PathLike, *,
             meta: dict | None = None) -> None:
    """Write weights + basis + metadata atomically (torch.save to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": model.state_dict(), "config": model.config, "meta": meta or {}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_file(path: Path) -> SpectralAutoEncoder:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    sd = payload["state_dict"]
    cfg = payload["config"]
    model = SpectralAutoEncoder(sd["phi"], sd["eigenvalues"], sizes=tuple(cfg["sizes"]),
                                channels=tuple(cfg["channels"]), latent_dim=cfg["latent_dim"],
                                kernel_size=cfg["kernel_size"])
    model.load_state_dict(sd)
    model.meta = payload.get("meta", {})  # training config and held-out errors
    model.eval()
    return model


def sae_cache_dir() -> Path:
    """User cache folder for trained weights.

    ``$PRISMFLOW_CACHE``, else ``$XDG_CACHE_HOME/prismflow``, else ``~/.cache/prismflow``.
    """
    from ...cache import user_cache_dir

    return user_cache_dir()
