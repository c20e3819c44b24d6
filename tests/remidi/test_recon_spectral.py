"""Spectral basis of the axon mesh: exact round trip, smoothness, mis-indexing caught."""

import numpy as np
import pytest
import torch

from prismflow.remidi import cylinder_mesh
from prismflow.remidi.reconstruction.spectral import SpectralBasis, graph_laplacian

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mesh():
    return cylinder_mesh(3.0, 9.0)


def _smoothness_report(basis, vertices, n_low=10):
    """Independent checks that the first vectors are smooth functions of position."""
    z = vertices[:, 2] - vertices[:, 2].mean()
    fiedler = basis.phi[:, 1]
    corr = abs(float(torch.corrcoef(torch.stack([fiedler, z]))[0, 1]))
    return corr, float(basis.localisation()[:n_low].max())


def test_recon_spectral_round_trip_is_exact_with_all_coefficients(mesh):
    v = mesh.vertices.detach().to(torch.float64)
    basis = SpectralBasis(mesh.tetrahedra, v.shape[0], k=None)
    torch.testing.assert_close(basis.decode(basis.encode(v)), v, rtol=0, atol=1e-12)
    torch.testing.assert_close(basis.phi.T @ basis.phi, torch.eye(v.shape[0], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    assert basis.is_eigenbasis_of(mesh.tetrahedra, v.shape[0])


def test_recon_spectral_basis_is_smooth(mesh):
    v = mesh.vertices.detach().to(torch.float64)
    basis = SpectralBasis(mesh.tetrahedra, v.shape[0], k=300)
    assert basis.phi.shape == (v.shape[0], 300)
    # constant vector first (connected mesh), eigenvalues ascending and >= 0
    assert float(basis.eigenvalues[0]) == pytest.approx(0.0, abs=1e-10)
    assert float(basis.eigenvalues[1]) > 1e-6
    assert bool((basis.eigenvalues[1:] >= basis.eigenvalues[:-1] - 1e-12).all())
    corr, loc = _smoothness_report(basis, v)
    assert corr > 0.9  # Fiedler vector of an elongated prism follows its axis
    assert loc < 0.2  # no low-frequency vector concentrated on a vertex
    assert float(basis.localisation().max()) < 0.9  # none at all sits on a single vertex
    # the 300-term projection of the straight mesh is already accurate to < 0.1 µm RMS
    proj = basis.decode(basis.encode(v))
    assert float(((proj - v) ** 2).mean().sqrt()) < 0.1


def test_recon_spectral_misindexed_edges_are_caught(mesh):
    v = mesh.vertices.detach().to(torch.float64)
    n = v.shape[0]
    tets = torch.as_tensor(mesh.tetrahedra)
    # classic bug: points re-ordered (e.g. by a file writer) but the tetrahedra left as they were
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    bad = SpectralBasis(perm[tets], n, k=300)
    torch.testing.assert_close(bad.phi.T @ bad.phi, torch.eye(300, dtype=torch.float64),
                               rtol=0, atol=1e-10)  # looks orthonormal...
    corr, _ = _smoothness_report(bad, v)
    assert corr < 0.5  # ...but its 'smooth' vectors do not follow the geometry
    assert not bad.is_eigenbasis_of(tets, n)
    # off-by-one indices (1-based read as 0-based, wrapped): caught by the eigenbasis check
    shifted = SpectralBasis((tets + 1) % n, n, k=300)
    assert not shifted.is_eigenbasis_of(tets, n)


def test_recon_laplacian_is_d_minus_a(mesh):
    n = mesh.vertices.shape[0]
    lap = graph_laplacian(mesh.tetrahedra, n)
    np.testing.assert_allclose(lap.sum(axis=1), 0.0)
    np.testing.assert_allclose(lap, lap.T)
    assert np.all(np.diag(lap) >= 3)  # every vertex of a tetra mesh has >= 3 neighbours
    with pytest.raises(ValueError, match="0-based"):
        graph_laplacian(torch.as_tensor(mesh.tetrahedra) + n, n)
