"""A brain-sized synthetic diffusion volume with known tissue fractions and fibre directions.

HCP geometry by default: a 145×174×145 grid of 1.25 mm voxels holding a brain mask of
741,046 voxels (the PRISM paper's HCP count), an HCP-like scheme (18 b=0 + 90 directions on each
of b = 1000/2000/3000 s/mm², 288 measurements, different directions per shell), and:

- CSF: an outer rim under the brain surface and two lateral ventricles;
- GM: a cortical ribbon inside the rim, with partial volume at both of its borders;
- deep WM whose orientation field is a few smooth bundles (a callosal left–right arc, two
  corticospinal-like inferior–superior columns, two anterior–posterior longitudinal bundles)
  over a radial "corona" background; where bundles overlap a voxel holds 2–3 fibres.

Each fibre is a cylindrically symmetric tensor, (λ∥, λ⊥) = (1.7, 0.2)·10⁻³ mm²/s, GM is
isotropic at 0.85·10⁻³ and CSF at 3.0·10⁻³ mm²/s — not the model's stick-and-zeppelin or its
fixed diffusivities, as in the paper's phantoms. Rician noise with σ = S0 / SNR on every volume.

The geometry is a fixed function of the grid; only the noise depends on ``seed``. The signal is
synthesised in voxel chunks (float32), so memory stays near the size of the output volume.
``scale`` shrinks every grid axis (and so the voxel count by about scale³) for quick runs.
Nothing here is ever written to the repository: build it when needed.

Axis letters: X, Y, Z grid; V brain voxels (C order of ``mask``); N measurements; K fibres.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ..io.gradients import Acquisition
from .schemes import hcp_like_scheme

#: HCP (WU-Minn) diffusion grid and the PRISM paper's brain-mask voxel count.
HCP_SHAPE = (145, 174, 145)
HCP_VOXEL_MM = 1.25
HCP_BRAIN_VOXELS = 741_046

WM_EVALS = (1.7e-3, 0.2e-3, 0.2e-3)
GM_DIFFUSIVITY = 0.85e-3
CSF_DIFFUSIVITY = 3.0e-3
MAX_FIBRES = 3


@dataclass(frozen=True)
class BrainPhantom:
    """The volume and its ground truth.

    dwi : (X, Y, Z, N) float32 noisy magnitude signal (0 outside the mask).
    mask : (X, Y, Z) bool brain mask. affine : (4, 4) voxel → mm (RAS, 1.25 mm by default).
    acquisition : the N-measurement scheme (b in s/mm², bvec frame = image axes).
    tissue : (V, 3) float32 true signal fractions [csf, gm, wm].
    fibre_dirs : (V, K, 3) float32 unit directions (zero rows where absent), K = 3.
    fibre_fractions : (V, K) float32 fibre fractions of the voxel (sum = wm).
    n_fibres : (V,) int8 fibres present. s0 : b=0 signal of a voxel without bias; snr; seed.
    """

    dwi: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    acquisition: Acquisition
    tissue: np.ndarray
    fibre_dirs: np.ndarray
    fibre_fractions: np.ndarray
    n_fibres: np.ndarray
    s0: float
    snr: float | None
    seed: int
    evals: tuple[float, float, float] = WM_EVALS
    gm_diffusivity: float = GM_DIFFUSIVITY
    csf_diffusivity: float = CSF_DIFFUSIVITY

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())

    @property
    def wm_fraction(self) -> np.ndarray:
        """(V,) true WM fraction."""
        return self.tissue[:, 2]

    @property
    def response_truth(self):
        """The oracle responses for the baselines (:class:`prismflow.baselines.ResponseTruth`)."""
        from ..baselines.responses import ResponseTruth

        return ResponseTruth(wm_evals=self.evals, gm_diffusivity=self.gm_diffusivity,
                             csf_diffusivity=self.csf_diffusivity, s0=self.s0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _geometry(shape, target):
    """Normalised coordinates (X, Y, Z, 3) in brain radii, the mask, and the radius map."""
    nx, ny, nz = shape
    # brain semi-axes in voxels for the HCP grid: left–right, anterior–posterior, inferior–superior
    sx, sy, sz = nx / 145.0, ny / 174.0, nz / 145.0
    semi = np.array([57.0 * sx, 73.0 * sy, 50.0 * sz])
    centre = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0 + 2.0 * sy, (nz - 1) / 2.0 - 4.0 * sz])
    grid = np.stack(np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij"), -1)
    p = (grid - centre.astype(np.float32)) / semi.astype(np.float32)          # (X, Y, Z, 3)
    rr = np.sqrt((p * p).sum(-1))
    u = p / np.maximum(rr, 1e-6)[..., None]
    # gyral-scale wobble of the surface and a flatter base
    wob = (1.0 + 0.035 * np.sin(9 * np.arctan2(u[..., 1], u[..., 0])) * np.cos(7 * u[..., 2])
           + 0.05 * np.clip(-u[..., 2] - 0.4, 0, None))
    r = rr * wob
    flat = r.ravel()
    k = min(max(int(target), 1), flat.size) - 1
    thr = np.partition(flat, k)[k]
    mask = r <= thr
    return p, r / thr, mask


def _tissue_and_fibres(p: np.ndarray, r: np.ndarray):
    """True tissue fractions (V, 3) and fibres (V, K, 3), (V, K) for brain voxels at p (V, 3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    v = p.shape[0]
    # outer CSF rim, cortical ribbon (partial volume at both borders), deep WM
    csf_rim = _sigmoid((r - 0.955) / 0.012)
    gm_band = _sigmoid((r - 0.82) / 0.02) * (1.0 - csf_rim)
    # lateral ventricles: two ellipsoids either side of the midline
    vent = np.zeros(v, dtype=np.float32)
    for side in (-1.0, 1.0):
        q = ((x - side * 0.13) / 0.09) ** 2 + ((y - 0.02) / 0.38) ** 2 + ((z - 0.12) / 0.12) ** 2
        vent = np.maximum(vent, _sigmoid((1.0 - q) / 0.08))
    csf = np.clip(csf_rim + vent * (1 - csf_rim), 0, 1)
    gm = np.clip(gm_band * (1 - vent), 0, 1 - csf)
    gm = gm + 0.06 * (1 - csf - gm)                   # some GM-like signal everywhere in tissue
    wm = np.clip(1.0 - csf - gm, 0, 1)
    tissue = np.stack([csf, gm, wm], -1).astype(np.float32)

    # bundles: (membership weight (V,), direction (V, 3))
    bundles = []
    # callosal arc: left–right, curving up laterally, above the ventricles
    w = np.exp(-(((z - 0.32 - 0.9 * x ** 2) / 0.1) ** 2) - (y / 0.55) ** 2)
    bundles.append((w, _unit(np.stack([np.ones_like(x), 0.0 * x, 1.8 * x], -1))))
    # corticospinal-like columns: inferior–superior, slightly converging downwards
    for side in (-1.0, 1.0):
        w = np.exp(-(((x - side * (0.3 + 0.08 * z)) / 0.1) ** 2) - ((y + 0.05) / 0.16) ** 2)
        bundles.append((w, _unit(np.stack([side * 0.08 * np.ones_like(x), 0.1 * z, np.ones_like(x)], -1))))
    # longitudinal bundles: anterior–posterior, lateral and a little superior
    for side in (-1.0, 1.0):
        w = np.exp(-(((x - side * 0.55) / 0.12) ** 2) - ((z - 0.15 + 0.2 * y ** 2) / 0.12) ** 2)
        bundles.append((w, _unit(np.stack([-side * 0.2 * y, np.ones_like(x), -0.4 * y], -1))))
    weights = np.stack([b[0] for b in bundles], 1).astype(np.float32)        # (V, B)
    dirs = np.stack([b[1] for b in bundles], 1).astype(np.float32)           # (V, B, 3)
    # background: radial corona field, present where no bundle dominates
    radial = _unit(p + np.array([0.0, 0.0, 0.35], dtype=np.float32)).astype(np.float32)
    bg = np.clip(1.0 - weights.max(1), 0, 1) * 0.9
    weights = np.concatenate([weights, bg[:, None]], 1)
    dirs = np.concatenate([dirs, radial[:, None]], 1)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :MAX_FIBRES]
    w_top = np.take_along_axis(weights, order, 1)
    d_top = np.take_along_axis(dirs, order[..., None], 1)
    # keep a fibre when it carries ≥ 30 % of the strongest one (and the strongest always)
    keep = w_top >= 0.3 * w_top[:, :1]
    keep[:, 0] = True
    # a second/third fibre closer than 30° to a kept one is merged away (not resolvable)
    for k in range(1, MAX_FIBRES):
        for j in range(k):
            close = np.abs((d_top[:, k] * d_top[:, j]).sum(-1)) > np.cos(np.deg2rad(30))
            keep[:, k] &= ~(close & keep[:, j])
    w_top = np.where(keep, w_top, 0.0)
    share = w_top / w_top.sum(1, keepdims=True)
    fib_frac = (share * wm[:, None]).astype(np.float32)
    fib_dirs = np.where(keep[..., None], d_top, 0.0).astype(np.float32)
    return tissue, fib_dirs, fib_frac, keep.sum(1).astype(np.int8)


def make_brain_phantom(*, scale: float = 1.0, snr: float | None = 30.0, seed: int = 0,
                       s0: float = 100.0, acquisition: Acquisition | None = None,
                       chunk: int = 32768, bias: float = 0.1) -> BrainPhantom:
    """Build the brain phantom (see the module docstring).

    Parameters
    ----------
    scale : linear shrink factor of the HCP grid (1.0: 145×174×145, 741,046 brain voxels;
        0.5: about 92k voxels).
    snr : b=0 signal-to-noise ratio of a voxel without bias (σ = s0 / snr); None: no noise.
    seed : seeds the noise (the geometry does not depend on it).
    s0 : b=0 signal of brain tissue, a.u.
    acquisition : default :func:`hcp_like_scheme`.
    chunk : voxels synthesised at once (memory ≈ chunk × N × 4 bytes × a few).
    bias : amplitude of a smooth multiplicative receive-field bias (0: none).
    """
    if not 0.05 <= scale <= 1.0:
        raise ValueError(f"scale must be in [0.05, 1]; got {scale}")
    acq = acquisition or hcp_like_scheme()
    shape = tuple(max(8, int(round(s * scale))) for s in HCP_SHAPE)
    target = int(round(HCP_BRAIN_VOXELS * scale ** 3)) if scale < 1.0 else HCP_BRAIN_VOXELS
    p_grid, r_grid, mask = _geometry(shape, target)
    p, r = p_grid[mask], r_grid[mask]
    del p_grid, r_grid
    tissue, fdirs, ffrac, nfib = _tissue_and_fibres(p, r)
    bias_v = (1.0 + bias * (0.6 * p[:, 0] + 0.3 * p[:, 1] - 0.5 * p[:, 2] * p[:, 2])).astype(np.float32)
    n = len(acq)
    bvals = acq.bvals.astype(np.float32)
    bvecs = acq.bvecs.astype(np.float32)
    l_par, l_perp = WM_EVALS[0], WM_EVALS[1]
    iso = np.stack([np.exp(-bvals * CSF_DIFFUSIVITY), np.exp(-bvals * GM_DIFFUSIVITY)]).astype(np.float32)
    dwi = np.zeros(shape + (n,), dtype=np.float32)
    flat = dwi.reshape(-1, n)
    index = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    sigma = None if snr is None else s0 / snr
    for a in range(0, index.size, chunk):
        b = min(a + chunk, index.size)
        sig = tissue[a:b, :2] @ iso                                         # (m, N)
        for k in range(MAX_FIBRES):
            c = fdirs[a:b, k] @ bvecs.T
            att = np.exp(-bvals * (l_perp + (l_par - l_perp) * c * c))
            sig += ffrac[a:b, k, None] * att
        sig *= (s0 * bias_v[a:b])[:, None]
        if sigma is not None:
            n1 = rng.standard_normal(sig.shape, dtype=np.float32)
            n2 = rng.standard_normal(sig.shape, dtype=np.float32)
            sig = np.hypot(sig + sigma * n1, sigma * n2)
        flat[index[a:b]] = sig
    affine = np.diag([HCP_VOXEL_MM / scale] * 3 + [1.0])
    affine[:3, 3] = -np.array(shape) / 2.0 * affine[0, 0]
    return BrainPhantom(dwi=dwi, mask=mask, affine=affine, acquisition=acq, tissue=tissue,
                        fibre_dirs=fdirs, fibre_fractions=ffrac, n_fibres=nfib, s0=s0, snr=snr,
                        seed=seed)
