"""Spectral auto-encoder (SAE) of fixed-connectivity meshes, after Lemeunier et al. (2022).

A mesh P (V, 3) is projected on the first k = 300 Laplacian eigenvectors (``C = Φᵀ P``, see
:mod:`prismflow.remidi.spectral`); the SAE maps C (k, 3) to a 16-d latent z and back with 1-D
convolutions over the spectral axis and learned pooling / up-sampling matrices
300 → 64 → 32 → 16 (≈ 1e5 parameters). It is trained with the MSE on coefficients, which equals
the vertex MSE of the k-term projection because Φ is orthonormal.

Trained weights are looked up, in order, in ``prismflow/remidi/data/sae-<kind>.pt`` (shipped),
then in the user cache (``$PRISMFLOW_CACHE`` or ``$XDG_CACHE_HOME/prismflow`` or
``~/.cache/prismflow``); if neither holds weights whose stored basis is an eigenbasis of the
current mesh's Laplacian, they are trained (a few CPU minutes) and cached. Reproduce the shipped
files with::

    python -m prismflow.remidi.sae --kind bend --seed 0 --out prismflow/remidi/data/sae-bend.pt

References
----------
Lemeunier, Denis, Lavoué, Dupont, "Representation learning of 3D meshes using an autoencoder in
the spectral domain", Computers & Graphics 107:131–143 (2022).
Khole et al., "ReMiDi", section 3.2 and appendix D.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .spectral import SpectralBasis

logger = logging.getLogger(__name__)

__all__ = [
    "SpectralAutoEncoder",
    "SAETrainConfig",
    "train_sae",
    "load_sae",
    "save_sae",
    "sae_cache_dir",
    "SAE_KINDS",
]

SAE_KINDS = ("bend", "bead", "fan", "all")
_DATA_DIR = Path(__file__).with_name("data")


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


@dataclass(frozen=True)
class SAETrainConfig:
    """Training settings of the SAE.

    Parameters
    ----------
    kind : {"bend", "bead", "fan", "all"} — deformation dataset (``all`` = the three together).
    k : int — spectral coefficients (paper: 300).
    epochs : int — passes over the training set.
    batch_size : int — paper: 16; 64 default here (CPU throughput).
    lr : float — Adam learning rate (cosine-annealed to lr/20).
    augmentation : {"none", "scale", "paper"} — none; the 0.5×/1.5× axis scalings; or the paper's
        scalings × rotations (21× more data, a looser prior: on a bent axon it reconstructed
        worse, 0.41 vs 0.37 µm modified Chamfer, and trains 10× longer — see notes/issue-6.md).
    seed : int — seeds weight init and batch order.
    """

    kind: str = "bend"
    k: int = 300
    epochs: int = 150
    batch_size: int = 32
    lr: float = 3e-3
    augmentation: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SAE_KINDS:
            raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {self.kind!r}")
        if self.augmentation not in ("none", "scale", "paper"):
            raise ValueError(f"augmentation must be none, scale or paper, "
                             f"got {self.augmentation!r}")


def _mesh_and_basis(k: int):
    from . import cylinder_mesh  # issue-5 simulator's mesher

    mesh = cylinder_mesh(3.0, 9.0)
    verts = mesh.vertices.detach().to(torch.float64)
    basis = SpectralBasis(mesh.tetrahedra, verts.shape[0], k=k)
    return mesh, verts, basis


def _datasets(kind: str, base: torch.Tensor, augmentation: str):
    from .deform import augment, make_dataset

    kinds = ("bend", "bead", "fan") if kind == "all" else (kind,)
    train = make_dataset(base, kinds, "train", augmentation=False)
    if augmentation != "none":
        train = augment(train, rotations=augmentation == "paper")
    val = make_dataset(base, kinds, "val", augmentation=False)
    test = make_dataset(base, kinds, "test", augmentation=False)
    return train, val, test


def train_sae(
    train_meshes: torch.Tensor,
    basis: SpectralBasis,
    *,
    val_meshes: torch.Tensor | None = None,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    max_seconds: float | None = None,
) -> tuple[SpectralAutoEncoder, dict]:
    """Train an SAE on meshes sharing the basis' connectivity.

    Parameters
    ----------
    train_meshes : Tensor, shape (B, V, 3), µm.
    basis : SpectralBasis — the shared basis (k columns).
    val_meshes : Tensor, shape (B', V, 3), optional — reported each epoch.
    epochs, batch_size, lr, seed : training settings (Adam, cosine annealing).
    max_seconds : float, optional — stop after the epoch that exceeds this wall time.

    Returns
    -------
    (SpectralAutoEncoder, history) — history has per-epoch ``train_rmse_um`` /
    ``val_rmse_um`` (vertex RMSE of the decoded 300-term projection, µm) and ``seconds``.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SpectralAutoEncoder(basis.phi, basis.eigenvalues)
    coefs = basis.encode(train_meshes.to(torch.float64)).to(torch.float32)  # (B, k, 3)
    model.coef_mean.copy_(coefs.mean(dim=0))
    std = coefs.std(dim=0)
    model.coef_std.copy_(std + 1e-3 * std.max())
    val_coefs = None
    if val_meshes is not None:
        val_coefs = basis.encode(val_meshes.to(torch.float64)).to(torch.float32)
    n = coefs.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)
    history: dict = {"train_rmse_um": [], "val_rmse_um": [], "seconds": 0.0}
    n_vert = basis.phi.shape[0]
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            batch = coefs[perm[i:i + batch_size]]
            loss = ((model(batch) - batch) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * batch.shape[0]
        # coefficient MSE summed over k·3 equals the vertex squared error; RMSE per vertex coord:
        train_rmse = math.sqrt(total / n * coefs.shape[1] / n_vert)
        history["train_rmse_um"].append(train_rmse)
        msg = f"epoch {epoch + 1}/{epochs} train RMSE {train_rmse:.4f} µm"
        if val_coefs is not None:
            model.eval()
            with torch.no_grad():
                v = float(((model(val_coefs) - val_coefs) ** 2).mean())
            history["val_rmse_um"].append(math.sqrt(v * coefs.shape[1] / n_vert))
            msg += f", val {history['val_rmse_um'][-1]:.4f} µm"
        logger.info(msg)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            logger.warning("SAE training stopped after %d epochs (time limit)", epoch + 1)
            break
    history["seconds"] = time.perf_counter() - t0
    model.eval()
    return model, history


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
    if os.environ.get("PRISMFLOW_CACHE"):
        return Path(os.environ["PRISMFLOW_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prismflow"


def load_sae(
    kind: str = "bend",
    *,
    tetrahedra=None,
    n_vertices: int | None = None,
    train_if_missing: bool = True,
    config: SAETrainConfig | None = None,
) -> SpectralAutoEncoder:
    """Trained SAE for a deformation family: shipped, else cached, else trained and cached.

    Parameters
    ----------
    kind : {"bend", "bead", "fan", "all"}
    tetrahedra, n_vertices : connectivity the weights must fit (default: the default
        ``cylinder_mesh(3, 9)``); weights whose stored basis is not an eigenbasis of this
        connectivity's Laplacian are ignored.
    train_if_missing : bool — train (minutes on CPU) and cache when nothing fits.
    config : SAETrainConfig, optional — training settings when training.

    Returns
    -------
    SpectralAutoEncoder (eval mode, float32).
    """
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {kind!r}")
    if tetrahedra is None:
        from . import cylinder_mesh

        mesh = cylinder_mesh(3.0, 9.0)
        tetrahedra, n_vertices = mesh.tetrahedra, mesh.vertices.shape[0]
    name = f"sae-{kind}.pt"
    for folder in (_DATA_DIR, sae_cache_dir()):
        path = folder / name
        if path.is_file():
            model = _load_file(path)
            if model.matches_mesh(tetrahedra, n_vertices):
                logger.info("SAE weights: %s", path)
                return model
            logger.warning("ignoring %s: its basis does not fit this mesh connectivity", path)
    if not train_if_missing:
        raise FileNotFoundError(f"no SAE weights {name} for this mesh (searched {_DATA_DIR}, "
                                f"{sae_cache_dir()})")
    cfg = config or SAETrainConfig(kind=kind)
    logger.warning("training the %s SAE (first use; cached afterwards)", kind)
    model, _ = train_from_config(cfg)
    if not model.matches_mesh(tetrahedra, n_vertices):
        raise ValueError("SAE training uses the default cylinder_mesh(3, 9); this connectivity "
                         "differs — train on your own meshes with train_sae()")
    try:
        save_sae(model, sae_cache_dir() / name, meta=model.meta)
    except OSError as err:  # read-only home: keep the in-memory model
        logger.warning("could not cache SAE weights: %s", err)
    return model


def train_from_config(cfg: SAETrainConfig, *, max_seconds: float | None = None):
    """Build the datasets of ``cfg.kind`` on the default mesh and train.

    Returns (model, history).
    """
    _, verts, basis = _mesh_and_basis(cfg.k)
    train, val, test = _datasets(cfg.kind, verts, cfg.augmentation)
    model, hist = train_sae(train, basis, val_meshes=val, epochs=cfg.epochs,
                            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            max_seconds=max_seconds)
    with torch.no_grad():
        rec = model.decode_mesh(model.encode_mesh(test.float()))
        test_rmse = float(((rec - test.float()) ** 2).mean().sqrt())
        proj = basis.decode(basis.encode(test))
        proj_rmse = float(((proj - test) ** 2).mean().sqrt())
    hist["test_rmse_um"] = test_rmse
    hist["projection_rmse_um"] = proj_rmse
    model.meta = {"train_config": asdict(cfg), "n_train": int(train.shape[0]),
                  "test_rmse_um": test_rmse, "projection_rmse_um": proj_rmse,
                  "val_rmse_um": hist["val_rmse_um"][-1] if hist["val_rmse_um"] else None,
                  "train_seconds": hist["seconds"], "torch": str(torch.__version__)}
    logger.info("SAE %s: test RMSE %.4f µm (300-term projection alone %.4f µm), %.0f s",
                cfg.kind, test_rmse, proj_rmse, hist["seconds"])
    return model, hist


def main(argv: list[str] | None = None) -> int:
    """Train an SAE and save it: ``python -m prismflow.remidi.sae --kind bend --out FILE``."""
    p = argparse.ArgumentParser(prog="python -m prismflow.remidi.sae",
                                description="Train the ReMiDi spectral auto-encoder on CPU.")
    p.add_argument("--kind", choices=SAE_KINDS, default="bend", help="deformation dataset")
    p.add_argument("--out", required=True, help="output .pt file")
    p.add_argument("--epochs", type=int, default=SAETrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=SAETrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=SAETrainConfig.lr)
    p.add_argument("--seed", type=int, default=SAETrainConfig.seed)
    p.add_argument("--augmentation", choices=("none", "scale", "paper"), default="none",
                   help="training-set augmentation (default: none; paper: scalings × rotations)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    cfg = SAETrainConfig(kind=args.kind, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, augmentation=args.augmentation)
    model, _ = train_from_config(cfg)
    save_sae(model, args.out, meta=model.meta)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("saved %s (%d parameters)", args.out, n_params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
