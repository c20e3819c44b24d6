"""Training of the spectral auto-encoder (:mod:`.sae`) on deformed axon meshes.

The datasets come from :func:`prismflow.remidi.reconstruction.deform.make_dataset` on the default
family's template mesh (:func:`.sae.template_mesh`) with the paper's parameter splits; ``prismflow-mesh train-sae`` is the
command line (see :mod:`prismflow.cli.mesh`). Units: µm.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import torch

from .sae import SAE_KINDS, SpectralAutoEncoder, spectral_size, template_mesh
from .spectral import SpectralBasis

logger = logging.getLogger(__name__)

__all__ = ["SAETrainConfig", "train_sae", "train_from_config"]


@dataclass(frozen=True)
class SAETrainConfig:
    """Training settings of the SAE.

    Parameters
    ----------
    kind : {"bend", "bead", "fan", "all"} — deformation dataset (``all`` = the three together).
    k : int, optional — spectral coefficients (default: the family's, 300 as the paper, 450 for
        the 475-vertex beading template).
    epochs : int — passes over the training set.
    batch_size : int — paper: 16; 64 default here (CPU throughput).
    lr : float — Adam learning rate (cosine-annealed to lr/20).
    augmentation : {"none", "scale", "paper"} — none; the 0.5×/1.5× axis scalings; or the paper's
        scalings × rotations (77× more data, a looser prior: on a bent axon it reconstructed
        worse, d′ 0.39 vs 0.10 µm; on beading, one random scaling × rotation per profile
        added to the 3,200 profiles left the 16-d SAE under-fitted, train RMSE 0.18 µm, and
        its held-out even-count error rose from 0.25 to 0.82 × the straight mesh's).
    seed : int — seeds weight init and batch order.
    """

    kind: str = "bend"
    k: int | None = None
    epochs: int = 150
    batch_size: int = 32
    lr: float = 3e-3
    augmentation: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SAE_KINDS:
            raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {self.kind!r}")
        if self.k is None:
            object.__setattr__(self, "k", spectral_size(self.kind))
        if self.augmentation not in ("none", "scale", "paper"):
            raise ValueError(f"augmentation must be none, scale or paper, "
                             f"got {self.augmentation!r}")


def _mesh_and_basis(kind: str, k: int):
    mesh = template_mesh(kind)
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
    ``val_rmse_um`` (vertex RMSE of the decoded k-term projection, µm) and ``seconds``.
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


def train_from_config(cfg: SAETrainConfig, *, max_seconds: float | None = None):
    """Build the datasets of ``cfg.kind`` on the default mesh and train.

    Returns (model, history).
    """
    _, verts, basis = _mesh_and_basis(cfg.kind, cfg.k)
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
    logger.info("SAE %s: test RMSE %.4f µm (%d-term projection alone %.4f µm), %.0f s",
                cfg.kind, test_rmse, cfg.k, proj_rmse, hist["seconds"])
    return model, hist
