"""Spectral auto-encoder: shape/size, held-out reconstruction error, save/load round trip."""

import pytest
import torch

from prismflow.remidi import cylinder_mesh
from prismflow.remidi.reconstruction.deform import make_dataset
from prismflow.remidi.reconstruction.sae import SpectralAutoEncoder, save_sae, template_mesh
from prismflow.remidi.reconstruction.weights import load_sae
from prismflow.remidi.reconstruction.sae_training import train_sae
from prismflow.remidi.reconstruction.spectral import SpectralBasis

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    mesh = cylinder_mesh(3.0, 9.0)
    v = mesh.vertices.detach().to(torch.float64)
    return mesh, v, SpectralBasis(mesh.tetrahedra, v.shape[0], k=300)


def _rmse(a, b):
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def test_recon_sae_architecture(setup):
    _, _, basis = setup
    sae = SpectralAutoEncoder(basis.phi, basis.eigenvalues)
    n = sum(p.numel() for p in sae.parameters())
    assert 5e4 < n < 2e5  # ≈ 1e5 as in the paper
    z = sae.encode(torch.zeros(4, 300, 3))
    assert z.shape == (4, 16)
    assert sae.decode(z).shape == (4, 300, 3)


def test_recon_sae_quick_training_beats_the_mean_shape(setup, tmp_path):
    """A 20-second training (no augmentation) already halves the error of the mean mesh."""
    mesh, v, basis = setup
    train = make_dataset(v, "bend", "train", augmentation=False)
    test = make_dataset(v, "bend", "test", augmentation=False)
    sae, hist = train_sae(train, basis, epochs=60, batch_size=32, lr=3e-3, seed=0,
                          max_seconds=40)
    with torch.no_grad():
        rec = sae.decode_mesh(sae.encode_mesh(test.float()))
    err = _rmse(rec, test)
    baseline = _rmse(train.mean(0, keepdim=True).expand_as(test), test)
    assert err < 0.5 * baseline, (err, baseline)
    # save / load round trip keeps the outputs and the basis check
    path = tmp_path / "sae.pt"
    save_sae(sae, path)
    from prismflow.remidi.reconstruction.sae import _load_file

    again = _load_file(path)
    assert again.matches_mesh(mesh.tetrahedra, v.shape[0])
    with torch.no_grad():
        torch.testing.assert_close(again.decode_mesh(again.encode_mesh(test.float())), rec)


# The held-out error must beat doing nothing by a stated factor: the RMSE of the undeformed
# template against the same deformed test meshes (deformed cases only; returning the straight
# mesh would score exactly 1.0 here). Measured with the shipped weights: bend 0.05, fan 0.07,
# bead 0.20 (see notes/issue-16.md). Beading is held out like the paper's split: no training
# profile has an even bead count or one within 0.25 of it, and every test count is even; the
# earlier prior trained on the odd counts alone scored 1.55 here (worse than the straight mesh).
@pytest.mark.parametrize("kind, factor", [("bend", 0.2), ("fan", 0.2), ("bead", 0.4)])
def test_recon_shipped_sae_beats_the_straight_mesh_on_held_out_meshes(kind, factor):
    """Shipped weights on the family's template: held-out test deformations come back at most
    ``factor`` × the straight mesh's RMS error (µm)."""
    mesh = template_mesh(kind)
    v = mesh.vertices.detach().to(torch.float64)
    sae = load_sae(kind, tetrahedra=mesh.tetrahedra, n_vertices=v.shape[0],
                   train_if_missing=False)
    test = make_dataset(v, kind, "test", augmentation=False)
    deformed = ((test - v) ** 2).sum(dim=(1, 2)) > 1e-12
    test = test[deformed]
    with torch.no_grad():
        rec = sae.decode_mesh(sae.encode_mesh(test.float()))
    straight = _rmse(v.expand_as(test), test)
    assert _rmse(rec, test) < factor * straight, (_rmse(rec, test), straight)


def test_recon_bead_template_resolves_eight_beads():
    """8 beads on the default 17 layers alias to the straight mesh; the beading template
    (25 layers) keeps them (straight-start Chamfer clearly above zero)."""
    from prismflow.metrics.chamfer import modified_chamfer_distance
    from prismflow.remidi.reconstruction.deform import bead

    for mesh, aliased in ((cylinder_mesh(3.0, 9.0), True), (template_mesh("bead"), False)):
        v = mesh.vertices.detach().to(torch.float64)
        d = float(modified_chamfer_distance(v, bead(v, n_beads=8, amplitude=0.3)))
        assert (d < 1e-9) if aliased else (d > 0.2), d
    assert template_mesh("bead").n_vertices == 475


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bend", "bead", "fan"])
def test_recon_shipped_sae_is_reproducible_from_its_seed(kind):
    """Re-running the documented training command reproduces the shipped weights' accuracy."""
    from prismflow.remidi.reconstruction.sae_training import SAETrainConfig, train_from_config

    shipped = load_sae(kind, train_if_missing=False)
    cfg = SAETrainConfig(**shipped.meta["train_config"])
    _, hist = train_from_config(cfg)
    assert hist["test_rmse_um"] == pytest.approx(shipped.meta["test_rmse_um"], rel=0.05)


def test_recon_sae_trained_on_first_use_and_cached(setup, tmp_path, monkeypatch):
    """Without shipped weights (e.g. a wheel without package data) the SAE is trained once and
    cached under $PRISMFLOW_CACHE; weights for another connectivity are ignored."""
    import prismflow.remidi.reconstruction.sae as sae_mod
    from prismflow.remidi.reconstruction.sae_training import SAETrainConfig

    mesh, v, _ = setup
    monkeypatch.setattr(sae_mod, "_DATA_DIR", tmp_path / "nothing-shipped")
    monkeypatch.setenv("PRISMFLOW_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError):
        load_sae("fan", train_if_missing=False)
    cfg = SAETrainConfig(kind="fan", epochs=20)
    first = load_sae("fan", config=cfg)
    cached = tmp_path / "cache" / "sae-fan.pt"
    assert cached.is_file()
    again = load_sae("fan", train_if_missing=False)
    z = torch.zeros(16)
    torch.testing.assert_close(again.decode_mesh(z), first.decode_mesh(z))
    # the cached basis does not fit a different connectivity: refused
    other = cylinder_mesh(3.0, 9.0, n_vertices=200)
    with pytest.raises(FileNotFoundError):
        load_sae("fan", tetrahedra=other.tetrahedra, n_vertices=other.vertices.shape[0],
                 train_if_missing=False)
