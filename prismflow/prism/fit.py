"""The PRISM optimiser loop: fit tissue and calibration parameters of a patch of voxels.

``PrismModel(acq, cfg).fit(dwi, mask=...)`` follows dipy's Model → Fit shape. Signals are
divided by each voxel's mean measured b=0 before fitting (the paper's normalisation) and the
outputs are returned in data units.

Axis letters: V voxels, N measurements, K fibres.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ..io.errors import InputError
from ..io.gradients import Acquisition
from ..progress import Progress
from .calibration import Calibration
from .config import Diffusivities, PrismConfig
from .fixels import merge_parallel, sort_fibres
from .init import hashed_normal
from .kernels import fidelity
from .model import AcquisitionTensors, constrain, predict
from .noise import b0_noise_sigma
from .priors import neighbour_pairs, prior_penalty
from .response import DiffusivityEstimate, estimate_diffusivities
from .result import PrismFit
from .selection import OFF_LOGIT, masked_logits, select_fibres

log = logging.getLogger(__name__)

_OPTIMIZERS = {
    "rprop": lambda p, lr: torch.optim.Rprop(p, lr=lr, etas=(0.5, 1.2), step_sizes=(1e-6, 1.0)),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
}


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU raises InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available; "
                         "use --device auto or cpu")
    return torch.device(name)


def shell_groups(acq: Acquisition, tol: float = 100.0) -> np.ndarray:
    """(N,) shell label per measurement: b rounded to ``tol`` s/mm², all b=0 volumes together."""
    return np.where(acq.b0_mask, -1, np.round(acq.bvals / tol)).astype(np.int64)


def b0_normalise(data: np.ndarray, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Divide (V, N) data by each voxel's mean b=0 signal. Returns (normalised, b0 (V,))."""
    if not np.any(acq.b0_mask):
        raise InputError("the acquisition has no b=0 volume (b <= 50 s/mm²); "
                         "PRISM normalises by the measured b=0 signal")
    b0 = data[:, acq.b0_mask].mean(axis=1)
    floor = max(float(np.percentile(b0, 99)) * 1e-3, 1e-6) if b0.size else 1e-6
    b0 = np.maximum(b0, floor)
    return data / b0[:, None], b0


def initial_raw_parameters(global_index: np.ndarray, n_fibres: int, seed: int, *,
                           shared_f_in: bool = False):
    """Raw initial parameters for voxels with the given global indices (numpy float32).

    Directions are random (hash of seed and voxel index); fractions start equal, f_in at
    0.5 (``fin_raw`` (V, 1) with ``shared_f_in``: one per voxel; else (V, K)), S0 at the
    measured b=0 (1 after normalisation).
    """
    v = global_index.shape[0]
    dirs = hashed_normal(seed, global_index, 3 * n_fibres).reshape(v, n_fibres, 3)
    logits = 0.01 * hashed_normal(seed + 1_000_003, global_index, 3 + n_fibres)
    return {
        "s0_raw": np.full(v, math.log(math.e - 1.0), dtype=np.float32),  # softplus⁻¹(1)
        "logits": logits.astype(np.float32),
        "dirs_raw": dirs.astype(np.float32),
        "fin_raw": np.zeros((v, 1 if shared_f_in else n_fibres), dtype=np.float32),
    }


def estimate_noise_sigma(data: np.ndarray, acq: Acquisition, fallback: float = 0.05) -> float:
    """Noise σ relative to b0 from the spread of repeated b=0 volumes
    (:func:`~prismflow.prism.noise.b0_noise_sigma`: the χ²-rescaled median of their variances).

    data : (V, N) in data units. Falls back to ``fallback`` with fewer than two b=0 volumes.
    """
    if int(acq.b0_mask.sum()) >= 2 and data.shape[0] > 0:
        y, _ = b0_normalise(np.asarray(data, dtype=np.float64), acq)
        s = b0_noise_sigma(y[:, acq.b0_mask])
        if np.isfinite(s) and s > 1e-4:
            return s
    return fallback


def fit_patch(data: np.ndarray, acq: Acquisition, cfg: PrismConfig, *,
              grid_mask: np.ndarray | None = None, global_index: np.ndarray | None = None,
              init: dict | None = None, noise_sigma: float | None = None,
              diffusivities: "DiffusivityEstimate | Diffusivities | None" = None,
              desc: str = "prism", progress: bool = True) -> PrismFit:
    """Fit the voxels of one patch.

    Parameters
    ----------
    data : (V, N) signal of the voxels, data units.
    acq : the acquisition (N measurements).
    cfg : the configuration.
    grid_mask : (X, Y, Z) bool with V True voxels (C order) giving their spatial layout; when
        None the voxels are independent (no spatial priors, no bias field).
    global_index : (V,) int — identity of each voxel for the seeded initialisation (default
        0..V−1). Use the flat index in the whole volume so slabs start as the whole fit does.
    init : optional raw initial parameters (see :func:`initial_raw_parameters`), e.g. a warm
        start; missing keys use the seeded random start.
    noise_sigma : σ relative to b0 (scales the priors in MSE mode, starts σ in NLL mode);
        default: estimated from this patch's repeated b=0 volumes. Slab-wise fits pass the
        whole volume's estimate so that every slab uses the same value.
    diffusivities : the compartment diffusivities to fit with — a
        :class:`~prismflow.prism.response.DiffusivityEstimate` made once per volume (slab-wise
        fits pass the volume's) or plain :class:`Diffusivities`. Default: estimated from this
        patch's data when ``cfg.estimate_diffusivities``, else ``cfg.diffusivities``.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(acq):
        raise InputError(f"data must be (V, {len(acq)}) to match the gradient table; got {data.shape}")
    if not np.all(np.isfinite(data)):
        raise InputError("data contain NaN or inf values")
    v, n = data.shape
    if grid_mask is None:
        grid_shape, voxel_index, pairs_np = (v, 1, 1), np.arange(v), None
    else:
        grid_mask = np.asarray(grid_mask, dtype=bool)
        if int(grid_mask.sum()) != v:
            raise ValueError(f"grid_mask has {int(grid_mask.sum())} voxels but data has {v}")
        grid_shape, voxel_index = grid_mask.shape, np.flatnonzero(grid_mask)
        pairs_np = neighbour_pairs(grid_mask, cfg.priors.neighbourhood)
    if global_index is None:
        global_index = np.arange(v)
    device = resolve_device(cfg.device)
    dtype = torch.float32
    t_start = time.perf_counter()

    y_np, b0 = b0_normalise(data, acq)
    y = torch.as_tensor(y_np, dtype=dtype, device=device)
    if diffusivities is None and cfg.estimate_diffusivities and not cfg.diffusivity_source:
        diffusivities = estimate_diffusivities(data, acq, defaults=cfg.diffusivities, seed=cfg.seed)
    estimate = diffusivities if isinstance(diffusivities, DiffusivityEstimate) else None
    if diffusivities is not None:
        # the config that is recorded (and that predict() of the outputs uses) carries the
        # values actually fitted with, and where they came from
        d_used = estimate.diffusivities if estimate is not None else diffusivities
        cfg = cfg.replace(diffusivities=d_used,
                          diffusivity_source=estimate.summary() if estimate is not None else "given")
    at = AcquisitionTensors(acq, cfg.diffusivities, device=device, dtype=dtype)
    # one non-zero shell: csf, gm and restricted are each a constant at that b-value, so only
    # one isotropic pool is identifiable; gm and restricted are switched off (reported as 0)
    single_shell = len(np.unique(np.round(np.asarray(acq.bvals)[~acq.b0_mask] / 100.0))) < 2
    logit_offset = torch.zeros((v, 3 + cfg.n_fibres), dtype=dtype, device=device)
    if single_shell:
        logit_offset[:, 1:3] = OFF_LOGIT
    start = initial_raw_parameters(global_index, cfg.n_fibres, cfg.seed, shared_f_in=cfg.shared_f_in)
    start.update(init or {})
    raw = {k: torch.nn.Parameter(torch.as_tensor(val, dtype=dtype, device=device).clone())
           for k, val in start.items()}
    calib_cfg = cfg.calibration
    if grid_mask is None and calib_cfg.bias_field:
        calib_cfg = type(calib_cfg)(**{**calib_cfg.__dict__, "bias_field": False})
    sigma_hat = noise_sigma if noise_sigma is not None else estimate_noise_sigma(data, acq, calib_cfg.sigma_init)
    prior_scale = 2.0 * sigma_hat ** 2 if cfg.loss == "mse" else 1.0
    calib = Calibration(calib_cfg, grid_shape, voxel_index, n, learn_sigma=cfg.loss == "nll",
                        sigma_init=sigma_hat, shell_index=shell_groups(acq),
                        device=device, dtype=dtype)
    pairs = torch.as_tensor(pairs_np, device=device) if pairs_np is not None else None
    params_list = list(raw.values()) + [p for p in calib.parameters()]
    if cfg.optimizer not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from {sorted(_OPTIMIZERS)}")
    opt = _OPTIMIZERS[cfg.optimizer](params_list, cfg.lr)

    warm = max(1, int(cfg.priors.topology_warmup * cfg.n_iter))

    def objective(it: int = cfg.n_iter):
        params = constrain(raw["s0_raw"], masked_logits(raw["logits"], logit_offset), raw["dirs_raw"], raw["fin_raw"])
        fid = fidelity(params, at, calib, y, cfg)
        ramp = min(1.0, (it + 1) / warm)
        return fid + prior_penalty(params, cfg.priors, pairs, prior_scale, ramp) + calib.penalty(), fid

    losses = torch.zeros(cfg.n_iter, device=device)
    bar = Progress(cfg.n_iter, f"{desc}: {v} voxels", logger=log, enabled=progress)
    it = 0
    for it in range(cfg.n_iter):
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(it)
        loss.backward()
        opt.step()
        losses[it] = loss.detach()
        if (it + 1) % cfg.patience == 0:          # one host sync per `patience` iterations
            cur = losses[it].item()
            bar.update(cfg.patience, loss=cur)
            if cfg.tol > 0 and it >= max(cfg.patience, warm):
                prev = losses[it - cfg.patience].item()
                if abs(prev - cur) <= cfg.tol * max(abs(prev), 1e-12):
                    break
    n_run = it + 1
    bar.done = n_run

    selection = None
    if cfg.fibre_selection == "evidence" and cfg.n_fibres > 1:
        with torch.no_grad():
            y_tissue = y
            bias_t = calib.bias()
            if bias_t is not None:
                y_tissue = y_tissue / bias_t[:, None]
            aff = calib.measurement_affine()
            if aff is not None:
                y_tissue = (y_tissue - aff[1]) / torch.exp(aff[0])
        t_sel = (time.perf_counter(), time.process_time())
        kept, logit_offset, selection = select_fibres(
            {k: r.detach() for k, r in raw.items()}, logit_offset, at, y_tissue, float(sigma_hat),
            axial=cfg.diffusivities.axial, radial=cfg.diffusivities.radial, min_fraction=cfg.min_fibre_fraction, relative_fraction=cfg.relative_fibre_fraction,
            criterion=cfg.fibre_criterion,
            neighbours=(neighbour_pairs(grid_mask, 26)
                        if grid_mask is not None and cfg.evidence_pool_deg > 0 else None),
            pool_angle_deg=cfg.evidence_pool_deg)
        # what the evidence test costs (process CPU: the fit runs on one thread per worker)
        selection.update(seconds=time.perf_counter() - t_sel[0],
                         cpu_seconds=time.process_time() - t_sel[1])
        with torch.no_grad():
            for k, r in raw.items():
                r.copy_(kept[k])

    with torch.no_grad():
        loss, fid = objective()
        params = constrain(raw["s0_raw"], masked_logits(raw["logits"], logit_offset), raw["dirs_raw"], raw["fin_raw"])
        bias = calib.bias()
        sigma = calib.sigma
        to_np = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        s0 = to_np(params.s0) * b0
        fractions = to_np(params.fractions)
        dirs, ffrac, fin = sort_fibres(*merge_parallel(to_np(params.directions), fractions[:, 3:],
                                                       to_np(params.f_in)))
        fractions = np.concatenate([fractions[:, :3], ffrac], axis=1)
        bias_np = to_np(bias) if bias is not None else np.ones(v)
        affine = calib.measurement_affine()
        scale = to_np(affine[0]) if affine is not None else np.zeros(n)
        offset = to_np(affine[1]) if affine is not None else np.zeros(n)
        sig = float(sigma) if sigma is not None else float("nan")
    # the prediction of the *reported* parameters (after merging duplicate fibres), so that
    # predict(...) of the outputs reproduces it
    tissue = predict(acq, s0=s0, fractions=fractions, directions=dirs, f_in=fin,
                     diffusivities=cfg.diffusivities)
    predicted = (tissue * np.exp(scale) + offset * b0[:, None]) * bias_np[:, None]
    residual_rms = np.sqrt(np.mean((predicted - data) ** 2, axis=1))
    seconds = time.perf_counter() - t_start
    hist = losses[:n_run].cpu().numpy()
    bar.close(f"({n_run} iterations, loss {float(loss):.4g})")
    full_mask = grid_mask if grid_mask is not None else np.ones((v, 1, 1), dtype=bool)
    return PrismFit(
        mask=full_mask, s0=s0, fractions=fractions, directions=dirs, f_in=fin,
        predicted=predicted.astype(np.float32), bias=bias_np, meas_scale=scale[None, :],
        meas_offset=offset[None, :], sigma=np.array([sig]), residual_rms=residual_rms,
        config=cfg.to_dict(),
        info={"iterations": n_run, "final_loss": float(loss), "final_fidelity": float(fid),
              "loss_history": hist.tolist(), "seconds": seconds, "device": str(device),
              "voxels": v, "measurements": n, "sigma_hat": sigma_hat,
              "voxel_iterations_per_s": v * n_run / max(seconds, 1e-9),
              "diffusivities": (estimate.to_dict() if estimate is not None
                                else {"diffusivities": dict(cfg.to_dict()["diffusivities"]),
                                      "sources": cfg.diffusivity_source or "constants"}),
              "single_shell": (("one non-zero shell: CSF, GM and restricted pools cannot be told "
                                "apart; one isotropic pool is fitted (reported as csf), gm = "
                                "restricted = 0") if single_shell else None),
              "selection": selection},
    )


class PrismModel:
    """PRISM model of an acquisition (dipy style: ``PrismModel(acq, cfg).fit(dwi, mask=...)``)."""

    def __init__(self, acq: Acquisition, cfg: PrismConfig | None = None):
        self.acq = acq
        self.cfg = cfg or PrismConfig()

    def fit(self, dwi: np.ndarray, *, mask: np.ndarray | None = None,
            progress: bool = True) -> PrismFit:
        """Fit a (V, N) array of independent voxels or a (X, Y, Z, N) volume.

        For a volume, ``mask`` (X, Y, Z) selects voxels (default: all) and spatial priors act
        between neighbours. Large volumes should go through :func:`prismflow.prism.fit_volume`.
        """
        dwi = np.asarray(dwi)
        if dwi.ndim == 2:
            return fit_patch(dwi, self.acq, self.cfg, progress=progress)
        if dwi.ndim != 4:
            raise InputError(f"dwi must be (V, N) or (X, Y, Z, N); got shape {dwi.shape}")
        mask = np.ones(dwi.shape[:3], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != dwi.shape[:3]:
            raise InputError(f"mask shape {mask.shape} does not match the image {dwi.shape[:3]}")
        return fit_patch(dwi[mask], self.acq, self.cfg, grid_mask=mask,
                         global_index=np.flatnonzero(mask), progress=progress)
