"""Meshes and P1 FEM blocks of the Bloch–Torrey simulator."""

import math

import pytest
import torch

from prismflow.io.errors import InputError
from prismflow.remidi import (Mesh, box_mesh, coaxial_cylinder_mesh, cylinder_mesh,
                              equal_area_radius, load_mesh)
from prismflow.remidi.simulator.fem import (apply_blocks, assemble_blocks, assemble_dense,
                                  element_geometry, mass_blocks, stiffness_blocks)
from prismflow.remidi.simulator.mesh import boundary_faces

torch.set_num_threads(1)


def polygon_area(R, n):
    return 0.5 * n * R * R * math.sin(2 * math.pi / n)


def test_default_cylinder_like_the_paper_axon():
    m = cylinder_mesh(3.0, 9.0)
    assert abs(m.n_vertices - 315) <= 15
    assert m.vertices.dtype == torch.float64 and m.tetrahedra.dtype == torch.long
    v = m.vertices
    assert torch.allclose(v.mean(0)[:2], torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert float(v[:, 2].min()) == pytest.approx(-4.5)
    assert float(v[:, 2].max()) == pytest.approx(4.5)
    assert float(v[:, :2].norm(dim=1).max()) == pytest.approx(3.0)
    q = m.quality()
    assert q["n_inverted"] == 0 and q["min_quality"] > 0.2
    assert q["volume_um3"] == pytest.approx(polygon_area(3.0, 12) * 9.0, rel=1e-12)
    assert q["surface_um2"] == pytest.approx(
        12 * 2 * 3.0 * math.sin(math.pi / 12) * 9.0 + 2 * polygon_area(3.0, 12), rel=1e-12)
    # the 12-gon is 4.5 % below the circle, as the paper's mesh
    assert 1 - q["volume_um3"] / (math.pi * 9 * 9) == pytest.approx(0.045, abs=2e-3)


def test_mesh_is_conforming_and_boundary_on_surface():
    m = cylinder_mesh(3.0, 9.0, 600, n_sides=10)
    faces = boundary_faces(m.tetrahedra)
    p = m.vertices[faces]  # (F, 3, 3)
    on_cap = (p[..., 2].abs() - 4.5).abs().amax(1) < 1e-9
    apothem = 3.0 * math.cos(math.pi / 10)
    # lateral faces: all three vertices on one side plane of the decagon
    ang = torch.atan2(p[..., 1].mean(1), p[..., 0].mean(1))
    k = torch.round((ang - math.pi / 10) / (2 * math.pi / 10))
    phi = math.pi / 10 + k * 2 * math.pi / 10
    nrm = torch.stack([torch.cos(phi), torch.sin(phi)], -1)
    dist = (p[..., :2] * nrm[:, None]).sum(-1)
    on_side = (dist - apothem).abs().amax(1) < 1e-9
    assert bool((on_cap | on_side).all())
    # total boundary area = surface area (no interior faces counted)
    area = 0.5 * torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]).norm(dim=-1).sum()
    assert float(area) == pytest.approx(float(m.surface_area()))


def test_resolution_and_equal_area_radius():
    for n in (100, 1000, 5000):
        m = cylinder_mesh(3.0, 9.0, n)
        assert 0.8 * n < m.n_vertices < 1.25 * n
    r = equal_area_radius(1.0, 12)
    assert polygon_area(1.0 / r, 12) == pytest.approx(math.pi)


def test_with_vertices_keeps_connectivity_and_validates():
    m = cylinder_mesh(2.0, 4.0, 100)
    v = m.vertices * 1.1
    m2 = m.with_vertices(v)
    assert m2.tetrahedra is m.tetrahedra
    assert float(m2.volume()) == pytest.approx(1.1 ** 3 * float(m.volume()))
    with pytest.raises(InputError):
        m.with_vertices(v[:-1])
    with pytest.raises(InputError):
        Mesh(torch.zeros(3, 3), torch.tensor([[0, 1, 2, 3]]))


def test_meshio_roundtrip(tmp_path):
    m = coaxial_cylinder_mesh(1.0, 2.0, 3.0, n_layers=3)
    path = tmp_path / "axon.vtu"
    m.save(path)
    m2 = load_mesh(path)
    assert torch.allclose(m2.vertices, m.vertices)
    assert torch.equal(m2.tetrahedra, m.tetrahedra)
    assert torch.equal(m2.compartments, m.compartments)
    with pytest.raises(InputError):
        load_mesh(tmp_path / "missing.vtu")


def test_fem_blocks_exact_integrals():
    m = cylinder_mesh(2.0, 3.0, 150)
    blk = assemble_blocks(m, 2.0)
    n = m.n_vertices
    M = assemble_dense(m.tetrahedra, blk.M, n)
    S = assemble_dense(m.tetrahedra, blk.S, n)
    vol = float(m.volume())
    one = torch.ones(n, dtype=torch.float64)
    assert float(one @ M @ one) == pytest.approx(vol, rel=1e-12)
    assert float((S @ one).abs().max()) < 1e-12
    x = m.vertices[:, 0]
    # linear functions are exact in P1: ∫|∇x|² D = D·vol
    assert float(x @ S @ x) == pytest.approx(2.0 * vol, rel=1e-12)
    # coordinate blocks about the centroid: ∫ x_d = 0 and ∫ x_d·x = ∫ x² = xᵀ M x
    J = torch.stack([assemble_dense(m.tetrahedra, blk.J[d], n) for d in range(3)])
    xc = m.vertices - blk.center
    assert float((one @ J[0] @ one)) == pytest.approx(0.0, abs=1e-10)
    assert float(one @ J[0] @ xc[:, 0]) == pytest.approx(float(xc[:, 0] @ M @ xc[:, 0]), rel=1e-12)
    # matrix-free application equals the assembled matrix
    X = torch.randn(n, 4, dtype=torch.float64)
    assert torch.allclose(apply_blocks(m.tetrahedra, blk.S, X, n), S @ X)
    assert torch.allclose(apply_blocks(m.tetrahedra, blk.J, X, n)[1], J[1] @ X)


def test_fem_blocks_gradcheck():
    v = torch.tensor([[0.1, 0.0, 0.0], [1.0, 0.2, 0.0], [0.0, 1.1, 0.1], [0.2, 0.1, 0.9]],
                     dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 1, 2, 3]])

    def f(v):
        g = element_geometry(v, t)
        return stiffness_blocks(g, 1.7), mass_blocks(g)

    assert torch.autograd.gradcheck(f, (v,))


def test_flux_matrix_on_coaxial_mesh():
    m = coaxial_cylinder_mesh(1.0, 2.0, 3.0, n_layers=4)
    assert m.n_compartments == 2
    blk = assemble_blocks(m, 2.0, permeability_um_per_ms=0.5)
    n = m.n_vertices
    Q = assemble_dense(blk.Q_index, blk.Q, n)
    one = torch.ones(n, dtype=torch.float64)
    assert float((Q @ one).abs().max()) < 1e-12  # no flux without a jump
    jump = (torch.zeros(n, dtype=torch.float64)
            .index_fill(0, m.interfaces[:, 1].reshape(-1).unique(), 1.0))
    # Q[u] = κ ∫_Γ [u]² = κ·|Γ| for a unit jump; |Γ| = lateral area of the inner 12-gon
    area = 12 * 2 * 1.0 * math.sin(math.pi / 12) * 3.0
    assert float(jump @ Q @ jump) == pytest.approx(0.5 * area, rel=1e-12)


def test_box_mesh_symmetric():
    m = box_mesh([2.0, 2.0, 1.0], [2, 2, 1])
    assert m.quality()["n_inverted"] == 0
    assert float(m.volume()) == pytest.approx(4.0)
    with pytest.raises(InputError):
        box_mesh([1, 1, 1], [0, 1, 1])
