"""Structured meshers: a straight polygonal cylinder (the axon section), a coaxial
two-compartment cylinder and a C4-symmetric box.

The cylinder mesher stacks a polygonal cross-section (an ``n_sides``-gon, triangulated as
concentric rings around a centre point) along z and splits every triangular prism into three
tetrahedra with the sorted-vertex rule, which makes neighbouring prisms agree on the
diagonals of their shared quadrilateral faces. The connectivity depends only on the ring
counts and the number of layers, so a deformed mesh (``Mesh.with_vertices``) reuses it.

Units: µm.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ...io.errors import InputError
from .mesh import Mesh, orient_tetrahedra as _orient

logger = logging.getLogger(__name__)

__all__ = ["cylinder_mesh", "coaxial_cylinder_mesh", "box_mesh", "equal_area_radius"]


# --------------------------------------------------------------------------- the mesher

def _ring_counts(n_sides: int, n_rings: int) -> list[int]:
    """Points per ring, innermost first.

    The outer ring holds the polygon's corners plus ``s`` − 1 equally spaced points per side,
    with ``s`` chosen so that the spacing along the boundary is close to the ring spacing;
    inner ring k holds about k/n_rings of the outer count (at least 5).
    """
    side = 2.0 * math.sin(math.pi / n_sides)  # side length / circumradius
    per_side = max(1, int(round(side * n_rings)))
    n_outer = n_sides * per_side
    counts = [max(5, int(round(n_outer * k / n_rings))) for k in range(1, n_rings)]
    return counts + [n_outer]


def _section(radius: float, n_sides: int, n_rings: int):
    """Points (P, 2) and triangles (F, 3) of the polygonal cross-section (counter-clockwise)."""
    counts = _ring_counts(n_sides, n_rings)
    pts = [np.zeros((1, 2))]
    rings = []
    start = 1
    for k, m in enumerate(counts, start=1):
        r = radius * k / n_rings
        ang = 2.0 * np.pi * np.arange(m) / m
        if k == n_rings:
            ring = _points_on_polygon(r, n_sides, m)
        else:
            ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
        pts.append(ring)
        rings.append((start, m, np.arctan2(ring[:, 1], ring[:, 0]) % (2 * np.pi)))
        start += m
    pts = np.concatenate(pts)
    tris = []
    s0, m0, _ = rings[0]
    for i in range(m0):
        tris.append((0, s0 + i, s0 + (i + 1) % m0))
    for (si, mi, ai), (so, mo, ao) in zip(rings[:-1], rings[1:]):
        tris.extend(_stitch(si, mi, ai, so, mo, ao))
    return pts, np.asarray(tris, dtype=np.int64)


def _points_on_polygon(r: float, n_sides: int, m: int) -> np.ndarray:
    corners = r * np.stack([np.cos(2 * np.pi * np.arange(n_sides + 1) / n_sides),
                            np.sin(2 * np.pi * np.arange(n_sides + 1) / n_sides)], axis=1)
    seg = np.linalg.norm(np.diff(corners, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = cum[-1] * np.arange(m) / m
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, n_sides - 1)
    w = ((s - cum[k]) / seg[k])[:, None]
    return (1 - w) * corners[k] + w * corners[k + 1]


def _stitch(si, mi, ai, so, mo, ao):
    """Triangles between two closed rings, advancing by angle (counter-clockwise)."""
    tris = []
    i = j = 0
    ai_ext = np.concatenate([ai, [ai[0] + 2 * np.pi]])
    ao_ext = np.concatenate([ao, [ao[0] + 2 * np.pi]])
    while i < mi or j < mo:
        a_in = si + i % mi
        a_out = so + j % mo
        if j < mo and (i >= mi or ao_ext[j + 1] <= ai_ext[i + 1]):
            tris.append((a_in, a_out, so + (j + 1) % mo))
            j += 1
        else:
            tris.append((a_in, a_out, si + (i + 1) % mi))
            i += 1
    return tris


def _choose_resolution(radius: float, length: float, n_vertices: int, n_sides: int):
    """(n_rings, n_layers) whose vertex count is nearest ``n_vertices`` with sane aspect."""
    best = None
    for n_rings in range(1, 200):
        per = 1 + sum(_ring_counts(n_sides, n_rings))
        if per > 4 * n_vertices:
            break
        n_layers = max(2, int(round(n_vertices / per)))
        for nl in {n_layers - 1, n_layers, n_layers + 1}:
            if nl < 2:
                continue
            v = per * nl
            dz = length / (nl - 1)
            dr = radius / n_rings
            cost = 3.0 * abs(math.log(v / n_vertices)) + 0.15 * abs(math.log(dz / dr))
            if best is None or cost < best[0]:
                best = (cost, n_rings, nl)
    return best[1], best[2]


def cylinder_mesh(radius_um: float, length_um: float, n_vertices: int = 315, *,
                  n_sides: int = 12, n_rings: int | None = None,
                  n_layers: int | None = None) -> Mesh:
    """A straight cylinder (an ``n_sides``-gonal prism) along z, centred at the origin.

    Parameters
    ----------
    radius_um : float — circumradius of the polygonal section, µm.
    length_um : float — height along z, µm (z in [−L/2, L/2]).
    n_vertices : int — approximate vertex count (default 315, like the ReMiDi axon: 12-sided,
        radius 3 µm, height 9 µm); picks ``n_rings`` and ``n_layers`` when they are not given.
    n_sides : int — sides of the polygonal section (default 12). Its area is
        (n/2)·R²·sin(2π/n): 4.5 % below the circle's for n = 12, see :func:`equal_area_radius`.
    n_rings : int, optional — concentric rings of points in the section (outer ring = corners).
    n_layers : int, optional — vertex layers along z (≥ 2).

    Returns
    -------
    Mesh — float64 vertices (V, 3) in µm, positively oriented tetrahedra (T, 4).
    """
    if radius_um <= 0 or length_um <= 0:
        raise InputError(f"cylinder radius and length must be > 0 µm; got {radius_um}, {length_um}")
    if n_sides < 3:
        raise InputError(f"n_sides must be >= 3; got {n_sides}")
    if n_rings is None or n_layers is None:
        r_auto, l_auto = _choose_resolution(radius_um, length_um, int(n_vertices), n_sides)
        n_rings = n_rings or r_auto
        n_layers = n_layers or l_auto
    if n_layers < 2 or n_rings < 1:
        raise InputError(f"need n_layers >= 2 and n_rings >= 1; got {n_layers}, {n_rings}")
    pts, tris = _section(float(radius_um), n_sides, n_rings)
    z = np.linspace(-length_um / 2.0, length_um / 2.0, n_layers)
    P = pts.shape[0]
    verts = np.concatenate([np.column_stack([pts, np.full(P, zz)]) for zz in z])
    tets = _extrude(tris, P, n_layers)
    tets = _orient(verts, tets)
    return Mesh(torch.as_tensor(verts, dtype=torch.float64), torch.as_tensor(tets))


def _extrude(tris: np.ndarray, P: int, n_layers: int) -> np.ndarray:
    """Split each prism (triangle × layer) into 3 tetrahedra by the sorted-vertex rule."""
    s = np.sort(tris, axis=1)
    v0, v1, v2 = s[:, 0], s[:, 1], s[:, 2]
    out = []
    for layer in range(n_layers - 1):
        b, t = layer * P, (layer + 1) * P
        out.append(np.stack([v0 + b, v1 + b, v2 + b, v2 + t], axis=1))
        out.append(np.stack([v0 + b, v1 + b, v1 + t, v2 + t], axis=1))
        out.append(np.stack([v0 + b, v0 + t, v1 + t, v2 + t], axis=1))
    return np.concatenate(out)


def equal_area_radius(radius_um: float, n_sides: int) -> float:
    """Radius of the circle with the same area as the n-gon of circumradius ``radius_um``."""
    return radius_um * math.sqrt(n_sides * math.sin(2 * math.pi / n_sides) / (2 * math.pi))


def coaxial_cylinder_mesh(inner_radius_um: float, outer_radius_um: float, length_um: float, *,
                          n_sides: int = 12, n_rings_inner: int = 2, n_rings_outer: int = 1,
                          n_layers: int = 8) -> Mesh:
    """Two compartments: an inner cylinder (label 0) inside a coaxial shell (label 1).

    The interface vertices are duplicated (one copy per side) and listed in
    ``Mesh.interfaces``, so that a permeability κ couples the two through the flux matrix Q.
    Intended for testing multi-compartment assembly; the outer shell's section rings are
    similar polygons of the inner one.
    """
    if not 0 < inner_radius_um < outer_radius_um:
        raise InputError("need 0 < inner_radius_um < outer_radius_um")
    pts_in, tris_in = _section(float(inner_radius_um), n_sides, n_rings_inner)
    m_out = _ring_counts(n_sides, n_rings_inner)[-1]
    # shell section: the inner boundary ring duplicated, then outer rings
    n_in = pts_in.shape[0]
    boundary = pts_in[n_in - m_out:]
    shell_pts = [boundary]
    rings = [(n_in, m_out, np.arctan2(boundary[:, 1], boundary[:, 0]) % (2 * np.pi))]
    start = n_in + m_out
    for k in range(1, n_rings_outer + 1):
        r = inner_radius_um + (outer_radius_um - inner_radius_um) * k / n_rings_outer
        ang = 2 * np.pi * np.arange(m_out) / m_out
        ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
        shell_pts.append(ring)
        rings.append((start, m_out, ang % (2 * np.pi)))
        start += m_out
    tris_out = []
    for (si, mi, ai), (so, mo, ao) in zip(rings[:-1], rings[1:]):
        tris_out.extend(_stitch(si, mi, ai, so, mo, ao))
    pts = np.concatenate([pts_in] + shell_pts)
    P = pts.shape[0]
    z = np.linspace(-length_um / 2.0, length_um / 2.0, n_layers)
    verts = np.concatenate([np.column_stack([pts, np.full(P, zz)]) for zz in z])
    t_in = _orient(verts, _extrude(tris_in, P, n_layers))
    t_out = _orient(verts, _extrude(np.asarray(tris_out), P, n_layers))
    tets = np.concatenate([t_in, t_out])
    comp = np.concatenate([np.zeros(len(t_in), np.int64), np.ones(len(t_out), np.int64)])
    # interface triangles: the lateral quads of the inner boundary ring, split consistently
    itf = []
    b_in = np.arange(n_in - m_out, n_in)
    b_out = np.arange(n_in, n_in + m_out)
    for layer in range(n_layers - 1):
        for i in range(m_out):
            j = (i + 1) % m_out
            a0, a1 = b_in[i] + layer * P, b_in[j] + layer * P
            a2, a3 = a0 + P, a1 + P
            c0, c1 = b_out[i] + layer * P, b_out[j] + layer * P
            c2, c3 = c0 + P, c1 + P
            itf.append([[a0, a1, a3], [c0, c1, c3]])
            itf.append([[a0, a3, a2], [c0, c3, c2]])
    return Mesh(torch.as_tensor(verts, dtype=torch.float64), torch.as_tensor(tets),
                torch.as_tensor(comp), torch.as_tensor(np.asarray(itf)))


def box_mesh(size_um, n_cells) -> Mesh:
    """A box centred at the origin, each cubic cell split into 24 tetrahedra symmetrically.

    The split (cell centre + face centres) is invariant under the cube's symmetry group, so a
    box with equal sides in x and y has exactly degenerate Laplacian eigenvalues (as a
    cylinder does): used to test the eigen backward on degenerate spectra.

    Parameters
    ----------
    size_um : (3,) — box edge lengths in µm; n_cells : (3,) — cells along x, y, z.
    """
    size = np.broadcast_to(np.asarray(size_um, dtype=np.float64), (3,))
    n = np.broadcast_to(np.asarray(n_cells, dtype=np.int64), (3,))
    if np.any(size <= 0) or np.any(n < 1):
        raise InputError(f"box_mesh needs positive sizes and cell counts; got {size}, {n}")
    keys: dict = {}

    def pid(key):
        if key not in keys:
            keys[key] = len(keys)
        return keys[key]

    tets = []
    for i in range(n[0]):
        for j in range(n[1]):
            for k in range(n[2]):
                o = np.array([2 * i, 2 * j, 2 * k])
                cc = pid(tuple(o + 1))
                for axis in range(3):
                    for side in (0, 2):
                        f = o + 1
                        f[axis] = o[axis] + side
                        fc = pid(tuple(f))
                        a, b = [d for d in range(3) if d != axis]
                        ring = []
                        for da, db in ((0, 0), (2, 0), (2, 2), (0, 2)):
                            p = o.copy()
                            p[axis] += side
                            p[a] += da
                            p[b] += db
                            ring.append(pid(tuple(p)))
                        for r in range(4):
                            tets.append((cc, fc, ring[r], ring[(r + 1) % 4]))
    pts = np.zeros((len(keys), 3))
    for key, idx in keys.items():
        pts[idx] = key
    pts = (pts / (2 * n) - 0.5) * size
    tets = _orient(pts, np.asarray(tets, dtype=np.int64))
    return Mesh(torch.as_tensor(pts), torch.as_tensor(tets))
