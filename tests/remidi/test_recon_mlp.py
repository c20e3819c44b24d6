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


def test_recon_mlp_symmetric_loss_forgives_only_what_the_signal_cannot_see():
    """Inverted, 90°-rotated and translated copies cost nothing; a bent copy still costs."""
    from prismflow.metrics.chamfer import symmetry_transforms
    from prismflow.remidi.reconstruction.deform import bend_twist
    from prismflow.remidi.reconstruction.mlp import symmetric_mse
    from prismflow.remidi.reconstruction.sae import template_mesh

    v = template_mesh("bend").vertices.detach().double()
    t = bend_twist(v, bend=0.3)
    mats = symmetry_transforms()
    moved = torch.stack([(t - t.mean(0)) @ m.T + 2.0 for m in mats])  # all 20, shifted
    loss = symmetric_mse(moved, t.expand_as(moved))
    assert float(loss.max()) < 1e-20
    other = symmetric_mse(v[None], t[None])
    assert float(other) > 0.1 and float(other) <= float(((v - t) ** 2).mean()) + 1e-12


def test_recon_mlp_ignores_noise_on_a_constant_input():
    """A column that is constant in training (the b = 0 signal) must not blow noise up."""
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(0, 1, 64, dtype=torch.float64)
    signals = torch.stack([torch.ones_like(t), torch.exp(-t), torch.exp(-2 * t)], 1)
    meshes = (t[:, None, None] * torch.ones(1, 5, 3, dtype=torch.float64))
    model, _ = train_mlp(signals, meshes, hidden=32, depth=2, epochs=100, dropout=0.0)
    noisy = signals[32].clone()
    noisy[0] += 0.01 * float(torch.randn(1, generator=g))  # SNR-100 noise on b = 0
    assert float((model.predict(noisy) - model.predict(signals[32])).abs().max()) < 0.2
