"""Chamfer distance between point clouds, and the ReMiDi "modified" Chamfer distance.

Distances are plain Euclidean (not squared), averaged and halved as in the paper's Algorithm 2,
so the result is in the units of the points (µm for meshes).

References
----------
Barrow et al., "Parametric correspondence and chamfer matching", IJCAI 1977.
Khole et al., "ReMiDi", section 4 and Algorithm 2.
"""

from __future__ import annotations

import itertools
import logging

import torch

logger = logging.getLogger(__name__)

__all__ = ["chamfer_distance", "modified_chamfer_distance", "symmetry_transforms"]


def chamfer_distance(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Chamfer distance (Algorithm 2 of ReMiDi).

    ``d = 1/(2n) Σ_i min_j |p1_i − p2_j| + 1/(2m) Σ_j min_i |p2_j − p1_i|``

    Parameters
    ----------
    p1 : Tensor, shape (n, 3) or (B, n, 3)
    p2 : Tensor, shape (m, 3) or (B, m, 3)

    Returns
    -------
    Tensor, shape () or (B,) — same units as the points; symmetric, zero for identical clouds.
    """
    if p1.shape[-1] != p2.shape[-1]:
        raise ValueError(f"point dimensions differ: {tuple(p1.shape)} vs {tuple(p2.shape)}")
    d = torch.cdist(p1, p2, compute_mode="donot_use_mm_for_euclid_dist")  # exact zeros
    return 0.5 * d.min(dim=-1).values.mean(dim=-1) + 0.5 * d.min(dim=-2).values.mean(dim=-1)


def _rot(axis: int, quarter_turns: int, dtype: torch.dtype) -> torch.Tensor:
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter_turns % 4]
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = torch.eye(3, dtype=dtype)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def symmetry_transforms(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The linear maps the modified Chamfer minimises over.

    Identity and the rotations by 90°, 180° and 270° about each of x, y and z, each with and
    without inversion through the centre (``-I``): 20 matrices.

    Returns
    -------
    Tensor, shape (20, 3, 3)
    """
    mats = [torch.eye(3, dtype=dtype)]
    mats += [_rot(a, q, dtype) for a, q in itertools.product(range(3), (1, 2, 3))]
    mats += [-m for m in mats]
    return torch.stack(mats)


def modified_chamfer_distance(
    recon: torch.Tensor, reference: torch.Tensor, *, align_centres: bool = True
) -> torch.Tensor:
    """Modified Chamfer distance: the minimum over rotations about each axis and inversion.

    ``d' = min_R d(R(recon), reference)`` where R runs over :func:`symmetry_transforms`
    applied about the bounding-box centre of ``recon``. The magnitude dMRI signal does not change
    when a mesh is translated, so by default the bounding-box centre of ``recon`` is also moved
    onto that of ``reference`` (``align_centres=False`` keeps the reconstruction where it is and
    only rotates/inverts it about its own centre).

    Parameters
    ----------
    recon : Tensor, shape (n, 3) — reconstructed vertices, µm.
    reference : Tensor, shape (m, 3) — reference vertices, µm.
    align_centres : bool — translate ``recon``'s bounding-box centre onto ``reference``'s.

    Returns
    -------
    Tensor, shape () — µm.
    """
    recon = recon.detach()
    reference = reference.detach().to(recon.dtype)
    c_rec = 0.5 * (recon.amax(dim=0) + recon.amin(dim=0))
    c_ref = 0.5 * (reference.amax(dim=0) + reference.amin(dim=0)) if align_centres else c_rec
    mats = symmetry_transforms(recon.dtype)
    moved = (recon - c_rec) @ mats.transpose(1, 2) + c_ref  # (20, n, 3)
    return chamfer_distance(moved, reference.expand(len(mats), -1, -1)).min()
