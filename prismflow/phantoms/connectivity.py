"""A DiSCo-like connectivity phantom: tubular bundles between ROIs on a spherical "brain".

Geometry (voxel units, 1 voxel = ``voxel_mm`` mm, centre of the grid = centre of the brain):

- a CSF rim (``r_brain < r <= r_brain + csf_mm``), a grey-matter ribbon
  (``r_wm < r <= r_brain``) and, inside it, tubular bundles over a grey-matter-like isotropic
  background (the space between DiSCo's strands);
- bundles are smooth curves (straight chords or quadratic Bézier arcs) whose two ends lie on the
  sphere ``r_end`` in the middle of the ribbon; every end is an ROI centre, ends closer than
  ``roi_merge`` share an ROI (so several bundles fan out of one ROI);
- by construction: pairs of straight bundles crossing at the preset's angles at a point deep
  inside the sphere (away from every ROI), one kissing pair (two arcs that touch tangentially
  and bend away), one fan (two bundles from one ROI to two nearby ROIs), and extra curved
  bundles between existing ROIs (they cross others at uncontrolled angles).

Signal: every voxel is supersampled (``sub``³ points). A point inside ``m`` bundle tubes holds
each with weight 1/m (interdigitating strands); each bundle's point contributes a cylindrically
symmetric tensor along the local tangent with that bundle's own eigenvalues (λ∥, λ⊥) drawn per
bundle — a multi-tensor model, not PRISM's stick-and-zeppelin, and not its fixed diffusivities.
Points outside every tube are isotropic: GM-like background / ribbon (``gm_diffusivity``) or CSF.
Rician noise with σ = S0 / SNR.

Truth: per-voxel fixels (one per bundle present, its mean tangent and volume fraction), the
parcellation (ROI labels on the ribbon), and the weighted connectome W: W[i, j] = the summed
cross-section area (mm²) of the bundles joining ROIs i and j — the number of strands of a bundle
is proportional to its cross-section, as in DiSCo.

Axis letters: X, Y, Z grid; B bundles; L ROIs; K fixels per voxel; N measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.gradients import Acquisition
from .crossing import add_rician_noise
from .schemes import multishell_scheme

#: Presets: crossing angles of the controlled crossings (degrees) and the grid.
PRESETS = {
    # the hardest setting: shallow crossings, 25-40 degrees, away from every ROI
    "hard": dict(shape=36, crossing_angles=(25.0, 30.0, 35.0, 40.0), n_curved=4),
    "easy": dict(shape=36, crossing_angles=(60.0, 70.0, 80.0, 90.0), n_curved=4),
    # tests: a small grid, two crossings
    "small": dict(shape=26, crossing_angles=(35.0, 70.0), n_curved=1, kissing=False,
                  radius_range=(1.3, 1.8)),
}


@dataclass(frozen=True)
class Bundle:
    """One bundle: ``points`` (P, 3) a densely sampled centre line in voxel coordinates,
    ``radius`` in voxels, ``evals`` (λ∥, λ⊥) in mm²/s, ``rois`` the two ROI labels (1-based),
    ``kind`` one of crossing / kissing / fanning / curved, ``angle_deg`` the designed crossing
    angle (NaN for other kinds)."""

    points: np.ndarray
    radius: float
    evals: tuple[float, float]
    rois: tuple[int, int]
    kind: str
    angle_deg: float = float("nan")

    @property
    def length(self) -> float:
        """Centre-line length in voxels."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass(frozen=True)
class ConnectivityPhantom:
    """The image, its acquisition and the ground truth.

    dwi : (X, Y, Z, N) float32 noisy magnitude signal; clean : same, noise free.
    mask : (X, Y, Z) bool brain (CSF rim included). wm_mask : (X, Y, Z) bool voxels whose true
        fibre fraction is at least 0.3 (where tracking is seeded).
    labels : (X, Y, Z) int16 parcellation, ROI labels 1..L, 0 elsewhere.
    affine : (4, 4) voxel → mm. acquisition : N measurements (bvec frame = voxel axes).
    fixel_dirs : (X, Y, Z, K, 3) true unit fixel directions (zero where absent), K = max_fixels.
    fixel_fractions : (X, Y, Z, K) true fixel volume fractions, sorted descending.
    tissue : (X, Y, Z, 3) volume fractions [csf, gm/background, fibres].
    bundles : the B bundles. roi_centres : (L, 3) voxel coordinates.
    weights : (L, L) true weighted connectome (cross-section mm², symmetric, zero diagonal).
    s0, snr, seed, preset : generation settings.
    """

    dwi: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    wm_mask: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    acquisition: Acquisition
    fixel_dirs: np.ndarray
    fixel_fractions: np.ndarray
    tissue: np.ndarray
    bundles: list
    roi_centres: np.ndarray
    weights: np.ndarray
    s0: float
    snr: float | None
    seed: int
    preset: str
    settings: dict = field(default_factory=dict)

    @property
    def n_rois(self) -> int:
        return int(self.roi_centres.shape[0])

    def true_pairs(self) -> set[tuple[int, int]]:
        """ROI label pairs (i < j, 1-based) joined by at least one bundle."""
        return {tuple(sorted(b.rois)) for b in self.bundles}

    def response_truth(self):
        """Mean bundle tensor and the isotropic diffusivities, for oracle baselines."""
        from ..baselines.responses import ResponseTruth

        ev = np.mean([b.evals for b in self.bundles], axis=0)
        return ResponseTruth(wm_evals=(float(ev[0]), float(ev[1]), float(ev[1])),
                             gm_diffusivity=self.settings["gm_diffusivity"],
                             csf_diffusivity=self.settings["csf_diffusivity"], s0=self.s0)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotate_towards(d: np.ndarray, angle_deg: float, rng) -> np.ndarray:
    """A unit vector at ``angle_deg`` from unit ``d`` in a random plane."""
    h = rng.standard_normal(3)
    h -= h.dot(d) * d
    h = _unit(h)
    a = np.deg2rad(angle_deg)
    return np.cos(a) * d + np.sin(a) * h


def _sphere_hit(p: np.ndarray, d: np.ndarray, radius: float) -> np.ndarray:
    """Where the ray p + t d (t > 0) leaves the sphere |x| = radius (p inside)."""
    b = p.dot(d)
    t = -b + np.sqrt(b * b - (p.dot(p) - radius ** 2))
    return p + t * d


def _bezier(a, c, b, n: int = 400) -> np.ndarray:
    """(n, 3) points of the quadratic Bézier a → b with control point c."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t ** 2 * b


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """Resample a polyline at (about) equal arc-length ``step``."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(np.ceil(s[-1] / step)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, i]) for i in range(3)], axis=1)


class _Layout:
    """Builds bundles one by one, keeping ROI ends apart (or merging them on purpose)."""

    def __init__(self, rng, r_end: float, r_wm: float, roi_sep: float, roi_merge: float):
        self.rng, self.r_end, self.r_wm = rng, r_end, r_wm
        self.roi_sep, self.roi_merge = roi_sep, roi_merge
        self.ends: list[np.ndarray] = []
        self.specs: list[dict] = []
        self.crossings: list[np.ndarray] = []

    def free(self, *points) -> bool:
        """True when every point is at least ``roi_sep`` from every existing end and from
        the other new points."""
        pts = list(points)
        for i, p in enumerate(pts):
            if any(np.linalg.norm(p - e) < self.roi_sep for e in self.ends):
                return False
            if any(np.linalg.norm(p - q) < self.roi_sep for q in pts[i + 1:]):
                return False
        return True

    def add(self, points, kind, angle=float("nan")):
        self.ends.extend([points[0], points[-1]])
        self.specs.append(dict(points=points, kind=kind, angle=angle))

    def crossing(self, angle: float, depth: float, clearance: float,
                 tries: int = 4000) -> bool:
        """Two straight chords through a point within ``depth``·r_wm of the centre; the
        crossing point keeps ``clearance`` from every other chord and crossing point, so
        each designed crossing holds exactly two bundles."""
        for _ in range(tries):
            p = _unit(self.rng.standard_normal(3)) * self.rng.uniform(0, depth) * self.r_wm
            d1 = _unit(self.rng.standard_normal(3))
            d2 = _rotate_towards(d1, angle, self.rng)
            ends = [_sphere_hit(p, s * d, self.r_end) for d in (d1, d2) for s in (1, -1)]
            if not self.free(*ends):
                continue
            lines = [_bezier(ends[k], 0.5 * (ends[k] + ends[k + 1]), ends[k + 1], 100)
                     for k in (0, 2)]
            old_lines = [s["points"] for s in self.specs]
            if any(np.linalg.norm(q - p, axis=1).min() < clearance for q in old_lines):
                continue
            if any(np.linalg.norm(q - c, axis=1).min() < clearance
                   for c in self.crossings for q in lines):
                continue
            self.crossings.append(p)
            for line in lines:
                self.add(_bezier(line[0], 0.5 * (line[0] + line[-1]), line[-1]), "crossing", angle)
            return True
        return False

    def kissing(self, gap: float, tries: int = 2000) -> bool:
        """Two arcs mirrored about a plane through the centre, touching at their middles."""
        for _ in range(tries):
            n = _unit(self.rng.standard_normal(3))
            u = _unit(np.cross(n, self.rng.standard_normal(3)))
            h = self.rng.uniform(0.25, 0.45) * self.r_end          # ends' height above the plane
            w = np.sqrt(self.r_end ** 2 - h ** 2)
            a, b = w * u + h * n, -w * u + h * n
            a2, b2 = a - 2 * h * n, b - 2 * h * n
            if not self.free(a, b, a2, b2):
                continue
            mid = 0.5 * gap * n                                     # the middle touches the plane
            c1 = 2 * mid - 0.5 * (a + b)
            c2 = -2 * mid - 0.5 * (a2 + b2)
            self.add(_bezier(a, c1, b), "kissing")
            self.add(_bezier(a2, c2, b2), "kissing")
            return True
        return False

    def fan(self, spread: float, tries: int = 2000) -> bool:
        """Two straight bundles from one ROI to two ROIs ``spread`` degrees apart (seen from it)."""
        for _ in range(tries):
            a = _unit(self.rng.standard_normal(3)) * self.r_end
            d = _unit(-a + self.rng.standard_normal(3) * 0.4 * self.r_end)
            d1 = _rotate_towards(d, spread / 2, self.rng)
            d2 = _unit(2 * d.dot(d1) * d - d1)                       # mirror of d1 about d
            b1 = _sphere_hit(a - 1e-6 * a, d1, self.r_end)
            b2 = _sphere_hit(a - 1e-6 * a, d2, self.r_end)
            if min(np.linalg.norm(b1 - a), np.linalg.norm(b2 - a)) < self.r_end:
                continue
            if self.free(a, b1, b2):
                self.add(_bezier(a, 0.5 * (a + b1), b1), "fanning")
                self.add(_bezier(a, 0.5 * (a + b2), b2), "fanning")
                return True
        return False

    def curved(self, tries: int = 2000) -> bool:
        """An arc between two existing ends (reused ROIs) that bends towards the centre."""
        ends = np.array(self.ends)
        for _ in range(tries):
            i, j = self.rng.choice(len(ends), 2, replace=False)
            a, b = ends[i], ends[j]
            if np.linalg.norm(a - b) < 0.8 * self.r_end:
                continue
            pair = {tuple(np.round(s["points"][[0, -1]].ravel(), 6)) for s in self.specs}
            if tuple(np.round(np.concatenate([a, b]), 6)) in pair:
                continue
            c = 0.5 * (a + b) * self.rng.uniform(0.0, 0.6)
            pts = _bezier(a, c, b)
            if np.linalg.norm(pts, axis=1)[60:-60].max() > self.r_wm - 0.5:
                continue
            self.specs.append(dict(points=pts, kind="curved", angle=float("nan")))
            return True
        return False


def _rois(specs, roi_merge: float):
    """ROI centres from bundle ends (ends closer than ``roi_merge`` share one) and each
    bundle's two 1-based labels."""
    centres: list[np.ndarray] = []
    pairs = []
    for s in specs:
        lab = []
        for p in (s["points"][0], s["points"][-1]):
            dist = [np.linalg.norm(p - c) for c in centres]
            if dist and min(dist) < roi_merge:
                lab.append(int(np.argmin(dist)) + 1)
            else:
                centres.append(p.copy())
                lab.append(len(centres))
        pairs.append(tuple(lab))
    return np.array(centres), pairs


def tensor_attenuation(acq: Acquisition, tangents: np.ndarray, evals) -> np.ndarray:
    """(P, N) attenuation of cylindrically symmetric tensors along unit ``tangents`` (P, 3):
    exp(−b (λ⊥ + (λ∥ − λ⊥)(g·t)²)), b in s/mm², λ in mm²/s."""
    lpar, lperp = evals
    c2 = (tangents @ acq.bvecs.T) ** 2
    return np.exp(-acq.bvals * (lperp + (lpar - lperp) * c2))


def make_connectivity_phantom(preset: str = "hard", *, seed: int = 0, snr: float | None = 30.0,
                              shape: int | None = None, voxel_mm: float = 1.0,
                              crossing_angles=None, n_curved: int | None = None,
                              kissing: bool | None = None, fanning: bool = True,
                              radius_range=None, lpar_range=(1.5e-3, 2.1e-3),
                              lperp_range=(0.15e-3, 0.4e-3), gm_diffusivity: float = 0.8e-3,
                              csf_diffusivity: float = 3.0e-3, s0: float = 100.0,
                              sub: int = 3, max_fixels: int = 3,
                              acquisition: Acquisition | None = None) -> ConnectivityPhantom:
    """Build the phantom (deterministic from ``seed``: geometry, diffusivities and noise).

    ``preset`` ("hard", "easy", "small") fills the grid size, crossing angles and number of
    extra curved bundles; keyword arguments override it. The default acquisition has 4 b=0
    volumes and 48 directions on each of b = 1000, 2000, 3000 s/mm² (148 measurements).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    pre = dict(PRESETS[preset])
    n = int(shape or pre["shape"])
    angles = tuple(crossing_angles if crossing_angles is not None else pre["crossing_angles"])
    n_curved = int(pre["n_curved"] if n_curved is None else n_curved)
    kissing = pre.get("kissing", True) if kissing is None else kissing
    radius_range = tuple(radius_range or pre.get("radius_range", (1.5, 2.2)))
    rng = np.random.default_rng(seed)
    acq = acquisition or multishell_scheme(n_dirs=48, n_b0=4, seed=0)

    centre = (n - 1) / 2.0
    r_brain = centre - 1.0
    csf = 1.0
    r_outer = r_brain + csf
    r_wm = r_brain - 2.0
    r_end = r_wm + 1.0
    roi_radius = 2.0
    layout = _Layout(rng, r_end, r_wm, roi_sep=2 * roi_radius + 0.8, roi_merge=roi_radius)
    for a in angles:
        if not layout.crossing(a, depth=0.55, clearance=2 * radius_range[1] + 1.0):
            raise RuntimeError(f"could not place a {a}° crossing; use a larger shape")
    if kissing and not layout.kissing(gap=2 * radius_range[0]):
        raise RuntimeError("could not place the kissing pair; use a larger shape")
    if fanning and not layout.fan(spread=30.0):
        raise RuntimeError("could not place the fan; use a larger shape")
    for _ in range(n_curved):
        layout.curved()
    roi_centres, pairs = _rois(layout.specs, roi_merge=roi_radius)
    bundles = []
    for s, pr in zip(layout.specs, pairs):
        bundles.append(Bundle(points=_resample(s["points"], 0.1) + centre,
                              radius=float(rng.uniform(*radius_range)),
                              evals=(float(rng.uniform(*lpar_range)),
                                     float(rng.uniform(*lperp_range))),
                              rois=pr, kind=s["kind"], angle_deg=s["angle"]))
    roi_centres = roi_centres + centre

    clean, fixel_dirs, fixel_fracs, tissue, mask = _synthesise(
        n, bundles, acq, centre=centre, r_wm=r_wm, r_brain=r_brain, r_outer=r_outer,
        gm_d=gm_diffusivity, csf_d=csf_diffusivity, s0=s0, sub=sub, max_fixels=max_fixels)

    # parcellation: ribbon voxels (and the first layer inside it) near each ROI centre
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).astype(np.float64)
    r = np.linalg.norm(grid - centre, axis=-1)
    ribbon = (r > r_wm - 1.0) & (r <= r_brain)
    labels = np.zeros((n, n, n), np.int16)
    best = np.full((n, n, n), np.inf)
    for i, c in enumerate(roi_centres):
        d = np.linalg.norm(grid - c, axis=-1)
        take = ribbon & (d <= roi_radius + 0.5) & (d < best)
        labels[take], best[take] = i + 1, d[take]

    n_roi = len(roi_centres)
    weights = np.zeros((n_roi, n_roi))
    for b in bundles:
        i, j = b.rois[0] - 1, b.rois[1] - 1
        if i != j:
            area = np.pi * (b.radius * voxel_mm) ** 2
            weights[i, j] += area
            weights[j, i] += area
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -centre * voxel_mm
    dwi = clean if snr is None else add_rician_noise(clean, s0 / snr, rng)
    return ConnectivityPhantom(
        dwi=dwi.astype(np.float32), clean=clean.astype(np.float32), mask=mask,
        wm_mask=fixel_fracs.sum(-1) >= 0.3, labels=labels, affine=affine, acquisition=acq,
        fixel_dirs=fixel_dirs.astype(np.float32), fixel_fractions=fixel_fracs.astype(np.float32),
        tissue=tissue.astype(np.float32), bundles=bundles, roi_centres=roi_centres,
        weights=weights, s0=s0, snr=snr, seed=seed, preset=preset,
        settings=dict(shape=n, voxel_mm=voxel_mm, crossing_angles=list(angles),
                      n_curved=n_curved, kissing=bool(kissing), fanning=bool(fanning),
                      radius_range=list(radius_range), lpar_range=list(lpar_range),
                      lperp_range=list(lperp_range), gm_diffusivity=gm_diffusivity,
                      csf_diffusivity=csf_diffusivity, sub=sub, r_wm=r_wm, r_brain=r_brain,
                      roi_radius=roi_radius))


def _synthesise(n, bundles, acq, *, centre, r_wm, r_brain, r_outer, gm_d, csf_d, s0, sub,
                max_fixels):
    """Supersampled signal and per-voxel truth (see the module docstring)."""
    from scipy.spatial import cKDTree

    nb = len(bundles)
    off = (np.arange(sub) + 0.5) / sub - 0.5
    so = np.stack(np.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)   # (s, 3)
    vox = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rv = np.linalg.norm(vox - centre, axis=1)
    near = rv <= r_outer + 1.0
    vidx = np.flatnonzero(near)
    pts = (vox[vidx][:, None, :] + so[None]).reshape(-1, 3)                     # (P, 3)
    rp = np.linalg.norm(pts - centre, axis=1)

    inside = np.zeros((len(pts), nb), bool)
    tangent = np.zeros((len(pts), nb, 3))
    for k, b in enumerate(bundles):
        tree = cKDTree(b.points)
        dist, idx = tree.query(pts, distance_upper_bound=b.radius)
        hit = np.isfinite(dist) & (rp <= r_brain)
        t = np.gradient(b.points, axis=0)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        inside[hit, k] = True
        tangent[hit, k] = t[idx[hit]]
    m = inside.sum(1)
    w = np.where(inside, 1.0 / np.maximum(m, 1)[:, None], 0.0)                   # (P, B)

    csf_pt = (rp > r_brain) & (rp <= r_outer)
    iso_pt = (rp <= r_brain) & (m == 0)
    sig_p = np.zeros((len(pts), len(acq)))
    sig_p[csf_pt] = np.exp(-acq.bvals * csf_d)
    sig_p[iso_pt] = np.exp(-acq.bvals * gm_d)
    for k, b in enumerate(bundles):
        sel = inside[:, k]
        if sel.any():
            sig_p[sel] += w[sel, k][:, None] * tensor_attenuation(acq, tangent[sel, k], b.evals)

    ns = len(so)
    nv = len(vidx)
    signal = s0 * sig_p.reshape(nv, ns, -1).mean(1)
    frac_b = w.reshape(nv, ns, nb).mean(1)                                        # (V, B)
    # tangents of one bundle come from one oriented curve, so their signs agree
    mean_t = np.einsum("vsb,vsbd->vbd", w.reshape(nv, ns, nb), tangent.reshape(nv, ns, nb, 3))
    norm = np.linalg.norm(mean_t, axis=-1, keepdims=True)
    mean_t = np.where(norm > 0, mean_t / np.maximum(norm, 1e-12), 0.0)
    tissue_v = np.stack([csf_pt.reshape(nv, ns).mean(1), iso_pt.reshape(nv, ns).mean(1),
                         frac_b.sum(1)], axis=1)

    order = np.argsort(-frac_b, axis=1, kind="stable")[:, :max_fixels]
    ff = np.take_along_axis(frac_b, order, axis=1)
    fd = np.take_along_axis(mean_t, order[..., None], axis=1)
    fd[ff <= 0] = 0.0
    shape = (n, n, n)
    clean = np.zeros(shape + (len(acq),))
    fixel_dirs = np.zeros(shape + (max_fixels, 3))
    fixel_fracs = np.zeros(shape + (max_fixels,))
    tissue = np.zeros(shape + (3,))
    flat = lambda a: a.reshape((-1,) + a.shape[3:])  # noqa: E731
    flat(clean)[vidx] = signal
    flat(fixel_dirs)[vidx, :ff.shape[1]] = fd
    flat(fixel_fracs)[vidx, :ff.shape[1]] = ff
    flat(tissue)[vidx] = tissue_v
    mask = tissue.sum(-1) > 0.5
    return clean, fixel_dirs, fixel_fracs, tissue, mask

