"""MLP baseline: shapes, standardisation, it learns a smooth signal → mesh map."""

import torch

from prismflow.remidi.reconstruction.mlp import SignalToMeshMLP, train_mlp

torch.set_num_threads(1)


def test_recon_mlp_learns_a_linear_family():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, 3, generator=g, dtype=torch.float64)
    direction = torch.randn(20, 3, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 64, dtype=torch.float64)
    meshes = base + t[:, None, None] * direction  # (64, 20, 3)
    signals = torch.stack([torch.exp(-t * k) for k in (0.5, 1.0, 2.0, 4.0)], 1)  # (64, 4)
    model, hist = train_mlp(signals, meshes, hidden=64, depth=2, epochs=150, batch_size=16,
                            dropout=0.0)
    assert hist["train_rmse_um"][-1] < 0.2 * hist["train_rmse_um"][0]
    pred = model.predict(signals[10])
    assert pred.shape == (20, 3)
    assert float((pred.double() - meshes[10]).abs().max()) < 0.5
    assert model.predict(signals[:5]).shape == (5, 20, 3)
    assert isinstance(model, SignalToMeshMLP)
