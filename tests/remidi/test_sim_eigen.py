"""Generalised eigenproblem: dense vs sparse, analytic spectra, gradients with degeneracy."""

import math

import numpy as np
import pytest
import scipy.special as ssp
import torch

from prismflow.remidi import PGSE, OGSE, box_mesh, cylinder_mesh, eigen_count, simulate_signal
from prismflow.remidi.simulator.eigen import cutoff_count, generalized_eigh
from prismflow.remidi.simulator.fem import apply_blocks, assemble_blocks
from prismflow.remidi.simulator.matrix_formalism import project_operators

torch.set_num_threads(1)


def _eig(mesh, k, method):
    blk = assemble_blocks(mesh, 2.0)
    return generalized_eigh(blk.S, blk.M, mesh.tetrahedra, mesh.n_vertices, k, method=method), blk


def test_dense_and_sparse_agree_and_are_m_orthonormal():
    m = cylinder_mesh(2.0, 4.0, 400)
    (ld, pd), blk = _eig(m, 20, "dense")
    (ls, ps), _ = _eig(m, 20, "sparse")
    assert torch.allclose(ld, ls, rtol=1e-9, atol=1e-9)
    n = m.n_vertices
    for phi in (pd, ps):
        G = phi.T @ apply_blocks(m.tetrahedra, blk.M, phi, n)
        assert torch.allclose(G, torch.eye(20, dtype=torch.float64), atol=1e-9)
    # same subspace (eigenvectors up to sign / rotation in clusters)
    P = pd.T @ apply_blocks(m.tetrahedra, blk.M, ps, n)
    assert torch.allclose(P.abs().sum(1), torch.ones(20, dtype=torch.float64), atol=1e-4) or \
        float(torch.linalg.svdvals(P).min()) > 1 - 1e-8


def test_box_spectrum_is_exact_to_discretisation_and_degenerate():
    # Neumann box a×a×c: λ = D π² (i²/a² + j²/a² + l²/c²), pairs degenerate in x ↔ y
    a, c = 2.0, 1.0
    m = box_mesh([a, a, c], [6, 6, 3])
    (lam, _), _ = _eig(m, 4, "dense")
    D = 2.0
    exact = sorted(D * math.pi ** 2 * (i * i / a / a + j * j / a / a + l * l / c / c)
                   for i in range(3) for j in range(3) for l in range(2))[:4]
    assert np.allclose(lam.numpy(), exact, rtol=0.03, atol=1e-9)
    assert float(lam[2] - lam[1]) < 1e-10 * float(lam[2])  # exactly degenerate pair


def test_cylinder_first_eigenvalues_converge_to_bessel():
    # first non-zero Neumann eigenvalue of a long disk section: D (j'_11 / R)², R equal-area
    from prismflow.remidi import equal_area_radius
    R = 2.0
    errs = []
    for n_sides, nv in ((12, 200), (24, 1200)):
        Rp = R / equal_area_radius(1.0, n_sides)
        m = cylinder_mesh(Rp, 1.0, nv, n_sides=n_sides, n_layers=2)
        (lam, _), _ = _eig(m, 3, "dense")
        exact = 2.0 * (ssp.jnp_zeros(1, 1)[0] / R) ** 2
        errs.append(abs(float(lam[1]) - exact) / exact)
    assert errs[1] < errs[0] and errs[1] < 0.01


def test_cutoff_never_splits_a_cluster():
    lam = np.array([0.0, 1.0, 2.0, 2.0 + 1e-12, 3.0])
    assert cutoff_count(lam, 2.0, 1e-9) == 4
    assert cutoff_count(lam, 1.5, 1e-9) == 2
    m = cylinder_mesh(3.0, 9.0)
    k = eigen_count(m, 2e-3, 1.0)
    assert 75 <= k <= 100  # SpinDoctor keeps 84 on its (TetGen) 315-vertex mesh


def _fd_check(mesh, k, *, seqs, gap_rel=1e-6, method="auto", n_check=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.tensor([[1.0, 0.3, 0.2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([0.0, 1000.0, 3000.0], dtype=torch.float64)
    wts = torch.randn(len(seqs), 3, 2, dtype=torch.float64, generator=gen)

    def f(v):
        s = simulate_signal(mesh.with_vertices(v), seqs, b, u, n_eig=k, tol=1e-13,
                            gap_rel=gap_rel, method=method)
        return (s * wts).sum()

    v = mesh.vertices.clone().requires_grad_(True)
    f(v).backward()
    g = v.grad
    idx = range(mesh.n_vertices) if n_check is None else torch.randperm(
        mesh.n_vertices, generator=gen)[:n_check].tolist()
    eps = 1e-5  # central differences: O(eps²) truncation, ~1e-13/eps round-off
    err = 0.0
    for i in idx:
        for d in range(3):
            vp = mesh.vertices.clone()
            vp[i, d] += eps
            vm = mesh.vertices.clone()
            vm[i, d] -= eps
            fd = (f(vp) - f(vm)) / (2 * eps)
            err = max(err, abs(float(fd - g[i, d])))
    return err, float(g.abs().max())


def test_gradient_matches_finite_differences_float64():
    m = cylinder_mesh(2.0, 3.0, n_sides=6, n_rings=1, n_layers=3)
    gen = torch.Generator().manual_seed(3)
    m = m.with_vertices(m.vertices + 0.05 * torch.randn(m.vertices.shape, dtype=torch.float64,
                                                        generator=gen))
    err, scale = _fd_check(m, 8, seqs=[PGSE(3, 8), OGSE(4, 6, 1)])
    assert err < 1e-6 * scale


def test_gradient_with_clusters_matches_finite_differences():
    # a large gap_rel turns neighbouring eigenvalues into clusters: the within-cluster
    # off-diagonal path (autograd) must give the same exact gradient
    m = cylinder_mesh(2.0, 3.0, n_sides=6, n_rings=1, n_layers=3)
    gen = torch.Generator().manual_seed(3)
    m = m.with_vertices(m.vertices + 0.05 * torch.randn(m.vertices.shape, dtype=torch.float64,
                                                        generator=gen))
    ops = project_operators(m, n_eig=8, gap_rel=0.05)
    assert ops.pairs.shape[0] >= 4  # clusters of size ≥ 2 exist
    err, scale = _fd_check(m, 8, seqs=[PGSE(3, 8)], gap_rel=0.05)
    assert err < 1e-6 * scale


def test_gradient_exactly_degenerate_spectrum():
    # C4-symmetric box: exactly degenerate eigenvalues (multiplicities 2, 3, 4)
    m = box_mesh([2.0, 2.0, 1.5], [2, 2, 1])
    k = eigen_count(m, length_scale_um=0.7)
    ops = project_operators(m, n_eig=k)
    lam = ops.eigenvalues
    assert np.min(np.diff(lam)[1:]) < 1e-9 * lam.max()
    err, scale = _fd_check(m, k, seqs=[PGSE(3, 8)], n_check=12)
    assert err < 1e-6 * scale


def test_sparse_backward_matches_dense():
    m = cylinder_mesh(2.0, 3.0, 120)
    u = torch.tensor([[1.0, 0.2, 0.1], [0.1, 0.0, 1.0]], dtype=torch.float64)
    b = [0.0, 1500.0, 4000.0]
    grads = []
    for method in ("dense", "sparse"):
        v = m.vertices.clone().requires_grad_(True)
        s = simulate_signal(m.with_vertices(v), PGSE(4, 12), b, u, n_eig=15, method=method)
        s.square().sum().backward()
        grads.append(v.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-8 * float(grads[0].abs().max()))


@pytest.mark.slow
def test_sparse_path_on_a_larger_mesh_matches_dense():
    m = cylinder_mesh(3.0, 9.0, 2000)
    u = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.2, 1.0]], dtype=torch.float64)
    b = [0.0, 2000.0, 8000.0]
    out = {}
    for method in ("dense", "sparse"):
        v = m.vertices.clone().requires_grad_(True)
        s = simulate_signal(m.with_vertices(v), PGSE(5, 25), b, u, method=method)
        s.sum().backward()
        out[method] = (s.detach(), v.grad)
    assert torch.allclose(out["dense"][0], out["sparse"][0], atol=1e-9)
    g_d, g_s = out["dense"][1], out["sparse"][1]
    assert float((g_d - g_s).norm() / g_d.norm()) < 1e-6
