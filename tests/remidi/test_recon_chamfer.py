"""Chamfer and modified Chamfer distances (ReMiDi Algorithm 2)."""

import math

import torch

from prismflow.metrics.chamfer import (chamfer_distance, modified_chamfer_distance,
                                       symmetry_transforms)

torch.set_num_threads(1)


def _cloud(n=50, seed=0):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_recon_chamfer_zero_for_identical_clouds():
    p = _cloud()
    assert float(chamfer_distance(p, p)) == 0.0
    assert float(chamfer_distance(p, p[torch.randperm(len(p))])) == 0.0  # no correspondence needed


def test_recon_chamfer_symmetric():
    p, q = _cloud(40, 1), _cloud(70, 2)
    torch.testing.assert_close(chamfer_distance(p, q), chamfer_distance(q, p), rtol=0, atol=1e-12)


def test_recon_chamfer_matches_brute_force_definition():
    p, q = _cloud(7, 3), _cloud(5, 4)
    d1 = sum(min(math.dist(a, b) for b in q.tolist()) for a in p.tolist()) / (2 * len(p))
    d2 = sum(min(math.dist(a, b) for b in p.tolist()) for a in q.tolist()) / (2 * len(q))
    assert abs(float(chamfer_distance(p, q)) - (d1 + d2)) < 1e-12


def test_recon_chamfer_translation_is_the_shift():
    p = _cloud(30, 5) * 0.01  # tight cloud: nearest neighbour of p + t is p's own copy
    shift = torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64)
    assert abs(float(chamfer_distance(p, p + shift)) - 5.0) < 0.1


def test_recon_modified_chamfer_ignores_inversion_rotation_translation():
    p = _cloud(60, 6) * torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert len(symmetry_transforms()) == 20
    centre = 0.5 * (p.amax(0) + p.amin(0))
    inverted = 2 * centre - p
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rotated = (p - centre) @ rot.T + centre + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    assert float(chamfer_distance(inverted, p)) > 0.1
    assert float(modified_chamfer_distance(inverted, p)) < 1e-12
    assert float(modified_chamfer_distance(rotated, p)) < 1e-12
    q = _cloud(60, 7)
    assert float(modified_chamfer_distance(q, p)) <= float(chamfer_distance(q, p)) + 1e-12
