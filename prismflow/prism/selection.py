"""Fibres kept on evidence: a per-voxel test of K against K − 1 fibres.

After the fit, each voxel's weakest *reported* fibre is removed (its fraction pinned to ≈ 0)
and the rest re-optimised from where it was, twice: once with the volume's diffusivities (the
model that is reported if the fibre goes) and once with the voxel's own D∥ and D⊥ free within
bounds (×0.67–1.5 and ×0.5–2 of the volume's). The fibre is kept only if it explains what the
one-fibre-fewer model with voxel-wise diffusivities cannot — an information criterion with the
noise σ estimated from the repeated b=0 volumes:

    keep  ⇔  (SSE_{K−1, own D} − SSE_K) / σ²  >  (p − q) · c(N),

SSE the voxel's sum of squared residuals of the b0-normalised, calibration-removed signal, N the
measurements, p = 4 the parameters a fibre adds (two direction angles, a fraction, f_in;
with the default one f_in per voxel, ``PrismConfig.shared_f_in``, a fibre adds only 3, but the
price stays 4: at 3 the tuning cell's single fibres got a second one in 5 % of voxels and a
random-tissue clinical SNR 20 diagnostic cell (seed 11) in 12.5 %, against 0 and 1 % at 4),
q = 2 the voxel-wise diffusivities the alternative spends instead, and c(N) the price of one
parameter: the Bayesian information criterion's c = ln N by default (``criterion="bic"``);
Hannan and Quinn's 2 ln ln N (``"hqc"``) and Akaike's 2 (``"aic"``) are selectable. Measured on
the tuning set (``benchmarks/crossing.py --snr 30``; robustness cell random / 3shell / SNR 30 /
seed 0): the smaller prices keep more narrow crossings, but single dipy tensors of random
tissue then get a second fibre (single-fibre false positives: BIC 1 %, HQC 4–8 %, AIC 14 %).
Without the voxel-wise alternative, a fibre whose diffusivities differ from the volume's
leaves a residual that grows with SNR², and a second fibre absorbing it passes any fixed
penalty (the FP1 of the robustness matrix). The removal is repeated along the whole path
(the next weakest of the refitted remainder, down to one fibre), and each voxel keeps the
model of least criterion on its path,

    score_K = SSE_K + p K σ² c(N),   score_k = SSE_k,own D + (p k + q) σ² c(N)   (k < K),

so that a fibre set whose one-fibre-fewer remainder is a poor local fit, but whose two-fewer
remainder explains the data, is still reduced. For K = 2 this is exactly the test above.
No threshold is tuned on a phantom: σ comes from the data and the penalty from N.

On image volumes the comparisons are then pooled (``prism/pooling.py``): a voxel's criterion
differences are averaged with those of the neighbours whose candidates show the same fibres,
so a narrow crossing that runs through many voxels is kept where each voxel alone falls just
short of the price. Pooling only adds fibres (a voxel keeps the larger of its own and the
pooled count). Where the volume's diffusivities already decided a smaller model, its criterion
(an upper bound of the voxel-wise-diffusivity one) is what enters the average.

Axis letters: V voxels, K fibres, N measurements.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .fixels import fibre_present
from .kernels import FusedConstants, fused_mse, fused_mse_voxel_diffusivities
from .model import AcquisitionTensors, constrain, tissue_signal
from .pooling import pooled_counts

#: Parameters one fibre adds to a voxel's model (direction: 2, fraction: 1, f_in: 1), as the
#: price per fibre also with a shared f_in (see the module docstring).
PARAMS_PER_FIBRE = 4
#: Parameters of the alternative's voxel-wise diffusivities (D∥, D⊥).
PARAMS_DIFFUSIVITY = 2
#: Bounds of the voxel-wise diffusivities as log-factors of the volume's: D∥ × e^(±0.4),
#: D⊥ × e^(±0.7) (λ∥ 1.4–2.2e-3 and λ⊥ 0.2–0.6e-3 around a volume estimate fit inside).
LOG_RANGE_AXIAL, LOG_RANGE_RADIAL = 0.4, 0.7


#: Information criteria: the price of one parameter in units of σ² for N measurements.
CRITERIA = {"bic": math.log,                                  # Schwarz
            "hqc": lambda n: 2.0 * math.log(math.log(n)),   # Hannan–Quinn
            "aic": lambda n: 2.0}                             # Akaike
#: The default criterion (see the module docstring for the measurements behind it).
DEFAULT_CRITERION = "bic"


def penalty_per_param(n_meas: int, criterion: str = DEFAULT_CRITERION) -> float:
    """The price of one parameter in units of σ² (SSE/σ² is −2 log-likelihood + const).

    ``criterion``: ``"bic"`` ln N (default), ``"hqc"`` 2 ln ln N, ``"aic"`` 2.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
    return float(CRITERIA[criterion](n_meas))


#: Logit that pins a removed fibre's fraction to ≈ e^(−30) of the others'.
OFF_LOGIT = -30.0


def masked_logits(logits: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``logits`` with the entries where ``offset`` holds :data:`OFF_LOGIT` replaced by it.

    A replacement, not a sum: the pinned entries then get exactly zero gradient, so a
    sign-based optimiser (Rprop) cannot walk them back up.
    """
    return torch.where(offset <= 0.5 * OFF_LOGIT, torch.full_like(logits, OFF_LOGIT), logits)


def per_voxel_sse(raw: dict, offset: torch.Tensor, at: AcquisitionTensors, y: torch.Tensor,
                  chunk: int = 2048) -> torch.Tensor:
    """(V,) sum over measurements of (tissue signal − y)², no gradients, in voxel chunks."""
    out = torch.empty(y.shape[0], dtype=torch.float64, device=y.device)
    with torch.no_grad():
        for a in range(0, y.shape[0], chunk):
            s = slice(a, a + chunk)
            p = constrain(raw["s0_raw"][s], masked_logits(raw["logits"][s], offset[s]), raw["dirs_raw"][s],
                          raw["fin_raw"][s])
            r = tissue_signal(p, at, fused=False) - y[s]
            out[s] = (r.double() ** 2).sum(1)
    return out


def active_groups(offset: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Voxels grouped by how many fibres are *not* pinned off in ``offset`` (V, 3+K).

    Returns [(rows (G,), cols (G, K')), ...]: each group's voxels and, per voxel, the fibre
    indices it keeps (in order; K' ≥ 1 — a voxel without a free fibre keeps one pinned one).
    A pinned fibre carries e^(−30) of the signal, so a refit over the kept fibres only follows
    the same path as over all K while the kernel evaluates K' instead of K fibres (measured on
    the brain phantom: most tested voxels keep 1 of 3 fibres, most pruned voxels 2 of 3).
    """
    pinned = offset[:, 3:] <= 0.5 * OFF_LOGIT
    free = (~pinned).sum(1)
    k = pinned.shape[1]
    # stable order: free fibres first, by index (a sort key of pinned·K + index)
    order = torch.argsort(pinned.long() * k + torch.arange(k, device=offset.device), dim=1)
    groups = []
    for n_keep in torch.unique(torch.clamp(free, min=1)).tolist():
        rows = torch.nonzero(torch.clamp(free, min=1) == n_keep).flatten()
        groups.append((rows, order[rows, :n_keep]))
    return groups


def _fibre_columns(fin_raw: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``fin_raw`` of voxels ``rows`` at fibres ``cols``; a shared (V, 1) f_in stays (G, 1)."""
    if fin_raw.shape[1] == 1:
        return fin_raw[rows]
    return torch.gather(fin_raw[rows], 1, cols)


def _gather(raw: dict, offset: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """The raw parameters and offsets of voxels ``rows`` restricted to fibres ``cols`` (G, K')."""
    c3 = torch.cat([torch.arange(3, device=cols.device).expand(cols.shape[0], 3), 3 + cols], 1)
    sub = {"s0_raw": raw["s0_raw"][rows],
           "logits": torch.gather(raw["logits"][rows], 1, c3),
           "dirs_raw": torch.gather(raw["dirs_raw"][rows], 1, cols[..., None].expand(-1, -1, 3)),
           "fin_raw": _fibre_columns(raw["fin_raw"], rows, cols)}
    return sub, torch.gather(offset[rows], 1, c3), c3


def _refit(raw: dict, offset: torch.Tensor, consts: FusedConstants, y: torch.Tensor,
           n_iter: int, lr: float) -> dict:
    """Re-optimise the raw parameters of a voxel subset with fixed logit ``offset`` (MSE).

    Pinned fibres are left out of the optimisation (see :func:`active_groups`) and returned
    unchanged.
    """
    out = {k: v.detach().clone() for k, v in raw.items()}
    for rows, cols in active_groups(offset):
        sub, off, c3 = _gather(raw, offset, rows, cols)
        new = _refit_all(sub, off, consts, y[rows], n_iter, lr)
        out["s0_raw"][rows] = new["s0_raw"]
        out["logits"][rows[:, None], c3] = new["logits"]
        out["dirs_raw"][rows[:, None], cols] = new["dirs_raw"]
        if out["fin_raw"].shape[1] == 1:          # f_in shared by the voxel's fibres
            out["fin_raw"][rows] = new["fin_raw"]
        else:
            out["fin_raw"][rows[:, None], cols] = new["fin_raw"]
    return out


def _refit_all(raw: dict, offset: torch.Tensor, consts: FusedConstants, y: torch.Tensor,
               n_iter: int, lr: float) -> dict:
    """:func:`_refit` over every fibre of ``raw``, pinned or not."""
    params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in raw.items()}
    opt = torch.optim.Rprop(list(params.values()), lr=lr, etas=(0.5, 1.2), step_sizes=(1e-6, 1.0))
    for _ in range(n_iter):
        opt.zero_grad(set_to_none=True)
        p = constrain(params["s0_raw"], masked_logits(params["logits"], offset), params["dirs_raw"],
                      params["fin_raw"])
        fused_mse(p, consts, y).backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


def _refit_own_diffusivities(raw: dict, offset: torch.Tensor, at: AcquisitionTensors,
                            y: torch.Tensor, axial: float, radial: float, n_iter: int,
                            lr: float) -> torch.Tensor:
    """Per-voxel SSE (V,) after re-optimising with the voxel's own bounded D∥, D⊥ (autograd).

    Over the voxels' unpinned fibres only (see :func:`active_groups`).
    """
    out = torch.empty(y.shape[0], dtype=torch.float64, device=y.device)
    for rows, cols in active_groups(offset):
        sub, off, _ = _gather(raw, offset, rows, cols)
        out[rows] = _refit_own_all(sub, off, at, y[rows], axial, radial, n_iter, lr)
    return out


def sse_with_voxel_diffusivities(raw: dict, offset: torch.Tensor, at: AcquisitionTensors,
                                 y: torch.Tensor, *, axial: float, radial: float,
                                 n_iter: int = 300, lr: float = 0.02) -> torch.Tensor:
    """(V,) sum of squared residuals after fitting each voxel with its own D∥, D⊥.

    The evidence test's alternative as a library call: the raw parameters (``s0_raw`` (V,),
    ``logits`` (V, 3+K), ``dirs_raw`` (V, K, 3), ``fin_raw`` (V, K) or (V, 1)) are the start,
    fibres whose ``offset`` (V, 3+K) holds :data:`OFF_LOGIT` stay off, and D∥, D⊥ (mm²/s) move
    within ×e^(±0.4) and ×e^(±0.7) of ``axial``, ``radial`` (``at`` must be built with them).
    y : (V, N) b0-normalised signal. Used by ``benchmarks/evidence.py``.
    """
    return _refit_own_diffusivities(raw, offset, at, y, axial, radial, n_iter, lr)


def _own_diffusivities(axial: float, radial: float, a_raw: torch.Tensor,
                       r_raw: torch.Tensor) -> torch.Tensor:
    """(V, 2) voxel-wise [D∥, D⊥] within the bounds around the volume's (D⊥ ≤ D∥), mm²/s."""
    d_ax = axial * torch.exp(LOG_RANGE_AXIAL * torch.tanh(a_raw))
    d_rad = torch.minimum(radial * torch.exp(LOG_RANGE_RADIAL * torch.tanh(r_raw)), d_ax)
    return torch.stack([d_ax, d_rad], 1)


def _own_sse(p, diff: torch.Tensor, at: AcquisitionTensors, y: torch.Tensor) -> torch.Tensor:
    """(V,) SSE of the tissue signal with voxel-wise fibre diffusivities ``diff`` (V, 2)."""
    b = at.bvals[None, None, :]
    d_ax, d_rad = diff[:, 0, None, None], diff[:, 1, None, None]
    c2 = torch.einsum("vkd,nd->vkn", p.directions, at.bvecs) ** 2
    fin = p.f_in[..., None]
    fib = fin * torch.exp(-b * d_ax * c2) + (1 - fin) * torch.exp(-b * (d_rad + (d_ax - d_rad) * c2))
    pred = p.s0[:, None] * (p.fractions[:, :3] @ at.iso
                            + torch.einsum("vk,vkn->vn", p.fractions[:, 3:], fib))
    return ((pred - y) ** 2).sum(1)


def _refit_own_all(raw: dict, offset: torch.Tensor, at: AcquisitionTensors, y: torch.Tensor,
                   axial: float, radial: float, n_iter: int, lr: float) -> torch.Tensor:
    """:func:`_refit_own_diffusivities` over every fibre of ``raw``, pinned or not.

    The optimisation runs on the fused per-voxel-diffusivity kernel (its loss is the mean, not
    the sum, of the squared residuals: Rprop follows the gradient's sign only, so the path is
    the same); the returned SSE is evaluated by the plain formula of :func:`_own_sse`.
    """
    params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in raw.items()}
    v = y.shape[0]
    a_raw = torch.nn.Parameter(torch.zeros(v, dtype=y.dtype, device=y.device))
    r_raw = torch.nn.Parameter(torch.zeros(v, dtype=y.dtype, device=y.device))
    consts = FusedConstants(at)

    def constrained():
        return constrain(params["s0_raw"], masked_logits(params["logits"], offset),
                         params["dirs_raw"], params["fin_raw"])

    opt = torch.optim.Rprop(list(params.values()) + [a_raw, r_raw], lr=lr, etas=(0.5, 1.2),
                            step_sizes=(1e-6, 1.0))
    for _ in range(n_iter):
        opt.zero_grad(set_to_none=True)
        fused_mse_voxel_diffusivities(constrained(), _own_diffusivities(axial, radial, a_raw, r_raw),
                                      consts, y).backward()
        opt.step()
    with torch.no_grad():
        return _own_sse(constrained(), _own_diffusivities(axial, radial, a_raw, r_raw), at, y).double()


def select_fibres(raw: dict, offset: torch.Tensor, at: AcquisitionTensors, y: torch.Tensor,
                  sigma: float, *, axial: float, radial: float, min_fraction: float,
                  relative_fraction: float, criterion: str = DEFAULT_CRITERION,
                  n_iter: int = 40, lr: float = 0.02, neighbours: np.ndarray | None = None,
                  pool_angle_deg: float = 0.0) -> tuple[dict, torch.Tensor, dict]:
    """Remove fibres the data do not support (see the module docstring).

    raw : the fit's raw parameters (``s0_raw`` (V,), ``logits`` (V, 3+K), ``dirs_raw``
        (V, K, 3), ``fin_raw`` (V, K)); offset : (V, 3+K) logit offsets already in force
        (0, or :data:`OFF_LOGIT` for switched-off compartments); y : (V, N) b0-normalised,
        calibration-removed data; sigma : noise σ relative to b0; axial, radial : the
        volume's D∥, D⊥ (mm²/s) that ``at`` was built with; criterion : the information
        criterion's price per parameter (:data:`CRITERIA`); neighbours : (P, 2) neighbour
        pairs of the voxels' spatial layout and pool_angle_deg > 0: pool each count's gain
        over neighbours whose candidates agree within that angle (``prism/pooling.py``).
    Returns (new raw, new offset — removed fibres carry :data:`OFF_LOGIT`, a record).
    """
    v, n = y.shape
    k = raw["dirs_raw"].shape[1]
    c = penalty_per_param(n, criterion)
    record = {"rule": f"per voxel the fibre count of least SSE/sigma^2 + {PARAMS_PER_FIBRE} c "
                      f"per fibre (+ {PARAMS_DIFFUSIVITY} c for voxel-wise D below the fit's "
                      f"count) along the weakest-first elimination path; criterion {criterion}, "
                      f"c = {c:.2f}, sigma = {sigma:.4g} of b0, N = {n}",
              "criterion": criterion, "tested": [], "removed": []}
    if k < 2 or v == 0 or not (sigma > 0):
        return raw, offset, record
    consts = FusedConstants(at)
    raw = {key: val.detach().clone() for key, val in raw.items()}
    offset = offset.clone()
    # fibres under the reporting thresholds are not reported, so they must not shape the
    # reported ones either (a few % of fraction at an odd angle bends the main direction):
    # pin them off and refit those voxels before testing the reported ones
    with torch.no_grad():
        f_all = torch.softmax(masked_logits(raw["logits"], offset), -1)[:, 3:].cpu().numpy()
    shown = fibre_present(f_all, min_fraction=min_fraction, relative_fraction=relative_fraction)
    hidden = (~shown) & (f_all > 1e-4)
    rows = np.flatnonzero(hidden.any(1))
    record["pruned_voxels"] = int(rows.size)
    if rows.size:
        idx = torch.as_tensor(rows, device=y.device)
        off = offset[idx].clone()
        off[:, 3:][torch.as_tensor(hidden[rows], device=y.device)] = OFF_LOGIT
        pruned = _refit({key: val[idx] for key, val in raw.items()}, off, consts, y[idx],
                        n_iter, lr)
        for key in raw:
            raw[key][idx] = pruned[key]
        offset[idx] = off
    # the whole elimination path: the weakest reported fibre is removed and the rest refitted,
    # down to one fibre; each voxel keeps the model of least information criterion on its path.
    # Stopping at the first fibre that passes would keep a three-fibre "fan" whose two-fibre
    # remainder is a poor local fit while its one-fibre remainder explains the data (measured:
    # single-shell single fibres with a weak rank prior, ΔSSE 10–17 σ² over one fibre).
    per_param = c * sigma ** 2
    price = PARAMS_PER_FIBRE * per_param
    with torch.no_grad():
        f0 = torch.softmax(masked_logits(raw["logits"], offset), -1)[:, 3:].cpu().numpy()
    n0 = fibre_present(f0, min_fraction=min_fraction, relative_fraction=relative_fraction).sum(1)
    sse = per_voxel_sse(raw, offset, at, y)
    best = sse + price * torch.as_tensor(n0, device=y.device, dtype=sse.dtype)
    state = {key: val.clone() for key, val in raw.items()}
    state_off = offset.clone()
    candidates = torch.arange(v, device=y.device)
    pool = neighbours is not None and pool_angle_deg > 0
    if pool:
        # every count a voxel's path reaches: its criterion and its model, for the pooled pass
        path_score = torch.full((v, k + 1), math.inf, dtype=sse.dtype, device=y.device)
        n0_t = torch.as_tensor(n0, device=y.device)
        path_score[torch.arange(v, device=y.device), n0_t] = torch.where(n0_t > 0, best, math.inf)
        # indexed by count; index 0 (no fibre) is never a candidate
        path_raw = [None] + [{key: val.clone() for key, val in raw.items()} for _ in range(k)]
        path_off = [None] + [offset.clone() for _ in range(k)]
    for _ in range(k - 1):
        with torch.no_grad():
            f = torch.softmax(masked_logits(state["logits"][candidates], state_off[candidates]),
                              -1)[:, 3:]
        fnp = f.cpu().numpy()
        present = fibre_present(fnp, min_fraction=min_fraction, relative_fraction=relative_fraction)
        test = present.sum(1) >= 2
        if not test.any():
            break
        idx = candidates[torch.as_tensor(np.flatnonzero(test), device=y.device)]
        n_left = torch.as_tensor(present[test].sum(1) - 1, device=y.device, dtype=sse.dtype)
        weakest = np.where(present[test], fnp[test], np.inf).argmin(1)
        sub = {key: val[idx] for key, val in state.items()}
        off = state_off[idx].clone()
        off[torch.arange(idx.shape[0], device=y.device),
            3 + torch.as_tensor(weakest, device=y.device)] = OFF_LOGIT
        reduced = _refit(sub, off, consts, y[idx], n_iter, lr)
        # a smaller model is scored as the voxel-wise-diffusivity model (q more parameters); the
        # volume's diffusivities are one point of that family, so their SSE bounds its SSE from
        # above, and the autograd refit with the voxel's own D∥, D⊥ is needed only where that
        # bound does not already make the smaller model the best so far
        extra = price * n_left + PARAMS_DIFFUSIVITY * per_param
        score = per_voxel_sse(reduced, off, at, y[idx]) + extra
        need = torch.nonzero(score >= best[idx]).flatten()
        if need.numel():
            sse_own = _refit_own_diffusivities({key: val[need] for key, val in sub.items()},
                                               off[need], at, y[idx][need], axial, radial,
                                               n_iter, lr)
            score[need] = torch.minimum(score[need], sse_own + extra[need])
        if pool:
            n_idx = n_left.long()
            path_score[idx, n_idx] = score
            for count in torch.unique(n_idx).tolist():
                at_count = n_idx == count
                for key in raw:
                    path_raw[count][key][idx[at_count]] = reduced[key][at_count]
                path_off[count][idx[at_count]] = off[at_count]
        better = score < best[idx]
        record["tested"].append(int(idx.shape[0]))
        record["removed"].append(int(better.sum()))
        won = idx[better]
        for key in raw:
            raw[key][won] = reduced[key][better]
            state[key][idx] = reduced[key]
        offset[won] = off[better]
        state_off[idx] = off
        best[won] = score[better]
        candidates = idx                      # every tested voxel walks on down its path
    if pool:
        raw, offset = _apply_pooling(raw, offset, path_score, path_raw, path_off, neighbours,
                                     pool_angle_deg, min_fraction, relative_fraction, record)
    return raw, offset, record


def _candidate_directions(path_raw: list[dict], path_off: list[torch.Tensor], min_fraction: float,
                          relative_fraction: float) -> np.ndarray:
    """(V, K+1, K, 3): per count k, the first rows the present fibres' unit directions of the
    voxel's k-fibre candidate (largest fraction first), zeros elsewhere."""
    kp1 = len(path_raw)
    v, k = path_raw[1]["dirs_raw"].shape[:2]
    out = np.zeros((v, kp1, k, 3))
    for count in range(1, kp1):
        with torch.no_grad():
            p = constrain(path_raw[count]["s0_raw"], masked_logits(path_raw[count]["logits"], path_off[count]),
                          path_raw[count]["dirs_raw"], path_raw[count]["fin_raw"])
            f = p.fractions[:, 3:].cpu().numpy()
            d = p.directions.cpu().numpy()
        shown = fibre_present(f, min_fraction=min_fraction, relative_fraction=relative_fraction)
        order = np.argsort(-np.where(shown, f, -1.0), axis=1, kind="stable")
        d_sorted = np.take_along_axis(d, order[..., None], axis=1)
        keep = np.take_along_axis(shown, order, axis=1)
        out[:, count] = d_sorted * keep[..., None]
    return out


def _apply_pooling(raw, offset, path_score, path_raw, path_off, neighbours, pool_angle_deg,
                   min_fraction, relative_fraction, record):
    """Re-decide every voxel's count with the pooled evidence; voxels whose count grows take
    the model of that count on their path. Records how many voxels gained fibres."""
    t0 = time.process_time()
    score = path_score.cpu().numpy()
    decided = np.argmin(np.where(np.isfinite(score), score, np.inf), axis=1)
    dirs = _candidate_directions(path_raw, path_off, min_fraction, relative_fraction)
    counts, group = pooled_counts(score, dirs, np.asarray(neighbours, dtype=np.int64), pool_angle_deg)
    change = np.isfinite(score).any(1) & (counts != decided) & np.isfinite(
        score[np.arange(score.shape[0]), counts])
    record["pooling"] = {"angle_deg": float(pool_angle_deg),
                         "gained_fibres": int(change.sum()),    # pooling only adds fibres
                         "median_group_of_changed": (float(np.median(group[change]))
                                                     if change.any() else 0.0)}
    for count in np.unique(counts[change]).tolist():
        rows = torch.as_tensor(np.flatnonzero(change & (counts == count)), device=offset.device)
        for key in raw:
            raw[key][rows] = path_raw[count][key][rows]
        offset[rows] = path_off[count][rows]
    record["rule"] += (f"; then each count comparison averaged over the voxel and its 26 neighbours "
                       f"whose candidates agree within {pool_angle_deg:g} deg; a voxel keeps the "
                       f"larger of its own and the pooled count")
    record["pooling"]["cpu_seconds"] = time.process_time() - t0
    return raw, offset
