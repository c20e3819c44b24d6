"""Deformations of the straight axon mesh (vertex maps), splits and augmentation."""

import math

import pytest
import torch

from prismflow.remidi.reconstruction import deform

torch.set_num_threads(1)


def _straight():
    """Points on a z-axis prism surface + axis, radius 3 µm, z in [-4.5, 4.5] (no mesher)."""
    z = torch.linspace(-4.5, 4.5, 10, dtype=torch.float64)
    a = torch.arange(12, dtype=torch.float64) * 2 * math.pi / 12
    ring = torch.stack([3 * torch.cos(a), 3 * torch.sin(a)], -1)
    pts = [torch.cat([ring, torch.full((12, 1), float(zz))], 1) for zz in z]
    axis = torch.stack([torch.zeros(10), torch.zeros(10), z], -1).double()
    return torch.cat(pts + [axis])


def test_recon_bend_is_quadratic_with_fixed_base():
    v = _straight()
    b = deform.bend_twist(v, bend=0.5)
    h = v[:, 2] + 4.5
    torch.testing.assert_close(b[:, 0] - v[:, 0], 0.5 * h**2 / 9.0)
    base = h == 0
    torch.testing.assert_close(b[base], v[base])
    top1 = deform.bend_twist(v, bend=0.1)[:, 0] - v[:, 0]
    torch.testing.assert_close(b[:, 0] - v[:, 0], 5 * top1)  # β = 0.5 is 5 × β = 0.1


def test_recon_twist_is_a_rotation_not_a_shear():
    v = _straight()
    t = deform.bend_twist(v, twist=0.5)
    # each cross-section keeps its radii and pairwise distances (rigid rotation about z)
    torch.testing.assert_close(t[:, :2].norm(dim=1), v[:, :2].norm(dim=1))
    top = v[:, 2] == 4.5
    torch.testing.assert_close(torch.cdist(t[top], t[top]), torch.cdist(v[top], v[top]))
    ang = torch.atan2(t[top][0, 1], t[top][0, 0]) - torch.atan2(v[top][0, 1], v[top][0, 0])
    assert abs(float(ang) - 0.5) < 1e-12


def test_recon_bead_and_fan():
    v = _straight()
    b = deform.bead(v, n_beads=2, amplitude=0.3)
    r = b[:, :2].norm(dim=1) / v[:, :2].norm(dim=1).clamp_min(1e-12)
    surf = v[:, :2].norm(dim=1) > 1
    assert float(r[surf].max()) == pytest.approx(1.3, abs=0.02)
    assert float(r[surf].min()) == pytest.approx(0.7, abs=0.02)
    # the phase shifts the beads along the axis: π/2 turns the sine profile into a cosine
    c = deform.bead(v, n_beads=2, amplitude=0.3, phase=math.pi / 2)
    base = v[:, 2] == v[:, 2].min()
    torch.testing.assert_close(c[base][:, :2], 1.3 * v[base][:, :2])
    f = deform.fan(v, angle_deg=60)
    top = (v[:, 2] == 4.5) & surf
    assert float(f[top][:, :2].norm(dim=1).max()) == pytest.approx(3 + 9 * math.tan(math.pi / 6))
    torch.testing.assert_close(f[v[:, 2] == -4.5], v[v[:, 2] == -4.5])


def test_recon_splits_are_disjoint_and_follow_the_paper():
    for kind in ("bend", "bead", "fan"):
        tr = set(deform.deformation_split(kind, "train"))
        va = set(deform.deformation_split(kind, "val"))
        te = set(deform.deformation_split(kind, "test"))
        assert not (tr & te) and not (tr & va) and not (va & te)
    # beading: no training count within BEAD_EVEN_GAP of an even integer (the test counts)
    counts = [d.n_beads for d in deform.deformation_split("bead", "train")]
    assert min(abs(n - 2 * round(n / 2)) for n in counts) >= deform.BEAD_EVEN_GAP
    # every odd count is near a training profile (the even ones are kept away, above)
    assert max(counts) > 9 and {int(n + 0.5) for n in counts} >= {1, 3, 5, 7, 9}
    assert {d.n_beads % 2 for d in deform.deformation_split("bead", "test")} == {0}
    assert {int(d.fan_deg) % 2 for d in deform.deformation_split("fan", "train")} == {1}
    test_bends = {d.bend for d in deform.deformation_split("bend", "test")}
    assert not test_bends & {d.bend for d in deform.deformation_split("bend", "train")}
    assert len(deform.TEST_VALUES["bend"]) == 8 and len(deform.TEST_VALUES["bead"]) == 10


def test_recon_augmentation_counts_and_rigidity():
    assert len(deform.AUGMENT_ROTATIONS) == 11 and len(deform.AUGMENT_SCALINGS) == 7
    for r in deform.AUGMENT_ROTATIONS:
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
        assert float(torch.linalg.det(r)) == pytest.approx(1.0)
    v = _straight()[None]
    out = deform.augment(v)
    assert out.shape == (77, v.shape[1], 3)
    torch.testing.assert_close(torch.cdist(out[5], out[5]), torch.cdist(v[0], v[0]))
