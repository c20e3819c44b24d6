"""MLP baseline of ReMiDi's Table 1: dMRI signal → vertex positions, trained with MSE.

The paper used 15 fully connected layers of 4096 units with dropout (≈ 2.4e8 parameters). On a
shared 2-core CPU the default here is 4 hidden layers of 512 units with dropout 0.1 (≈ 1.5e6
parameters; the Table-1 benchmark sets its own size). Inputs are standardised b0-normalised
signals; outputs are standardised vertex coordinates.

Symmetric loss (``symmetric=True``): the magnitude signal does not change under inversion
through the centre, nor under a rotation that maps the shape onto itself (a straight, beaded or
fanned axon under 90° about its axis) — but the vertex array does. Trained on augmented meshes
with a plain vertex MSE, the network is asked for different vertex arrays for one signal and
learns their average (train RMSE 2.2 µm measured on 300 augmented bending signals). The
symmetric loss takes, per sample, the minimum of the MSE over the same 20 rotations/inversions
the modified Chamfer distance d′ minimises over (about the centroids; translations are free as
in d′), so the network may answer any of the shapes the signal cannot tell apart.

References
----------
Khole et al., "ReMiDi", section 5.2.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["SignalToMeshMLP", "train_mlp", "symmetric_mse"]

#: smallest input standard deviation used to standardise signals (b0-normalised units; about
#: the noise level at SNR 100)
IN_STD_FLOOR = 0.01


def symmetric_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample vertex MSE, minimised over d′'s 20 rotations/inversions about the centroids.

    Parameters
    ----------
    pred, target : Tensor, shape (B, V, 3), µm.

    Returns
    -------
    Tensor, shape (B,), µm².
    """
    from ...metrics.chamfer import symmetry_transforms

    mats = symmetry_transforms(pred.dtype).to(pred.device)  # (R, 3, 3)
    p = pred - pred.mean(dim=1, keepdim=True)
    t = target - target.mean(dim=1, keepdim=True)
    moved = torch.einsum("bvj,rij->brvi", p, mats)  # (B, R, V, 3)
    return ((moved - t[:, None]) ** 2).mean(dim=(2, 3)).min(dim=1).values


class SignalToMeshMLP(nn.Module):
    """Fully connected network from a flattened signal (N,) to vertices (V, 3).

    Parameters
    ----------
    n_measurements : int — N = n_seq · n_b · n_dir.
    n_vertices : int — V.
    hidden : int — units per hidden layer.
    depth : int — number of hidden layers.
    dropout : float — dropout probability between hidden layers.
    """

    def __init__(self, n_measurements: int, n_vertices: int, *, hidden: int = 512, depth: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n_in = n_measurements
        for _ in range(depth):
            layers += [nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout)]
            n_in = hidden
        layers.append(nn.Linear(n_in, n_vertices * 3))
        self.net = nn.Sequential(*layers)
        self.n_vertices = n_vertices
        self.register_buffer("in_mean", torch.zeros(n_measurements))
        self.register_buffer("in_std", torch.ones(n_measurements))
        self.register_buffer("out_mean", torch.zeros(n_vertices * 3))
        self.register_buffer("out_std", torch.ones(n_vertices * 3))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        """Vertices from signals.

        Parameters
        ----------
        signal : Tensor, shape (B, N) or (N,) — b0-normalised; a single signal of any shape with N
            elements, e.g. (n_seq, n_b, n_dir), is flattened in C order.

        Returns
        -------
        Tensor, shape (B, V, 3) or (V, 3), µm.
        """
        n_meas = self.in_mean.shape[0]
        single = signal.numel() == n_meas
        x = signal.reshape(-1, n_meas)
        x = (x.to(torch.float32) - self.in_mean) / self.in_std
        y = self.net(x) * self.out_std + self.out_mean
        y = y.view(-1, self.n_vertices, 3)
        return y[0] if single else y

    def predict(self, signal: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode prediction without gradients; same shapes as :meth:`forward`."""
        self.eval()
        with torch.no_grad():
            return self(signal)


def train_mlp(
    signals: torch.Tensor,
    meshes: torch.Tensor,
    *,
    hidden: int = 512,
    depth: int = 4,
    dropout: float = 0.1,
    epochs: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    noise_sigma_max: float = 0.0,
    max_seconds: float | None = None,
    symmetric: bool = False,
) -> tuple[SignalToMeshMLP, dict]:
    """Train the MLP baseline with the MSE on vertex coordinates.

    Parameters
    ----------
    signals : Tensor, shape (B, N) — b0-normalised training signals.
    meshes : Tensor, shape (B, V, 3) — matching vertices, µm.
    hidden, depth, dropout : architecture.
    epochs, batch_size, lr, weight_decay, seed : AdamW training with cosine annealing.
    noise_sigma_max : float — noise augmentation: every sample of every batch gets Rician noise
        |S + σ(n₁ + i n₂)| with σ ~ U(0, noise_sigma_max) (relative to b = 0; 0.02 covers
        SNR ≥ 50), drawn afresh each epoch, so the network learns noisy inputs.
    max_seconds : float, optional — stop after the epoch that exceeds this wall time.
    symmetric : bool — use :func:`symmetric_mse` (see the module docstring) instead of the plain
        vertex MSE.

    Returns
    -------
    (SignalToMeshMLP, history) — ``history["train_rmse_um"]`` per epoch (in the loss's own
    sense: symmetric when ``symmetric``; dropout on, noisy inputs), ``seconds``.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = signals.reshape(signals.shape[0], -1).to(torch.float32)
    y = meshes.reshape(meshes.shape[0], -1).to(torch.float32)
    model = SignalToMeshMLP(x.shape[1], meshes.shape[1], hidden=hidden, depth=depth,
                            dropout=dropout)
    model.in_mean.copy_(x.mean(0))
    # floor 0.01 (b0-normalised units): the b = 0 column is exactly 1 in every clean training
    # signal, and a near-zero std turned measurement noise there into inputs of ±1e4 sd
    # (predictions of 100 µm measured at SNR 100 before this floor)
    model.in_std.copy_(x.std(0).clamp_min(IN_STD_FLOOR))
    model.out_mean.copy_(y.mean(0))
    model.out_std.copy_(y.std(0) + 1e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 50)
    hist: dict = {"train_rmse_um": []}
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            if noise_sigma_max > 0:
                sig = noise_sigma_max * torch.rand((len(idx), 1), generator=gen)
                n1 = torch.randn(xb.shape, generator=gen)
                n2 = torch.randn(xb.shape, generator=gen)
                xb = torch.sqrt((xb + sig * n1) ** 2 + (sig * n2) ** 2)
            pred = model(xb).reshape(len(idx), -1)
            if symmetric:
                loss = symmetric_mse(pred.view(len(idx), -1, 3), y[idx].view(len(idx), -1, 3))
                loss = loss.mean()
            else:
                loss = ((pred - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        hist["train_rmse_um"].append(math.sqrt(total / n))
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            logger.warning("MLP training stopped after %d epochs (time limit)",
                           len(hist["train_rmse_um"]))
            break
    hist["seconds"] = time.perf_counter() - t0
    model.eval()
    logger.info("MLP trained on %d signals: RMSE %.3f µm, %.1f s", n, hist["train_rmse_um"][-1],
                hist["seconds"])
    return model, hist
