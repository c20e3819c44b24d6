"""Slab geometry and stitching: cut a volume into overlapping slabs, blend slab fits back.

A volume (X, Y, Z, N) is cut along one axis into slabs of at most ``slab_size`` slices; every
pair of neighbouring slabs shares exactly ``slab_overlap`` slices (the slabs are balanced in
thickness instead of pushing the last one back over its neighbour). Each slab is fitted on its
own (its own calibration), then slabs are blended with linear ramps across each overlap.
Fibres are unordered and sign-free, so in an overlap the fibres of the incoming slab are first
permuted and sign-flipped to match the fibres already stitched, voxel by voxel, before their
directions are averaged; finally fibres that the blend left closer than the merge angle are
merged into one, as the per-slab fit does.

This module only does geometry and arrays: running the fits is :mod:`.parallel`, the
whole-volume plan is :mod:`.volume`.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..io.errors import InputError
from .fixels import merge_parallel, sort_fibres
from .result import PrismFit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slab:
    """Slices [start, stop) along ``axis``; ``index`` is the slab's position in the plan."""

    index: int
    start: int
    stop: int
    axis: int = 2

    def slicer(self, ndim: int = 3) -> tuple:
        s = [slice(None)] * ndim
        s[self.axis] = slice(self.start, self.stop)
        return tuple(s)

    def weights(self, overlap_before: int, overlap_after: int) -> np.ndarray:
        """(stop − start,) blend weights: linear ramps over the overlaps with the neighbours
        (slices shared with the previous / next slab)."""
        n = self.stop - self.start
        pos = np.arange(n, dtype=np.float64)
        w = np.ones(n)
        if overlap_before > 0:
            w = np.minimum(w, (pos + 1) / (overlap_before + 1))
        if overlap_after > 0:
            w = np.minimum(w, (n - pos) / (overlap_after + 1))
        return w


def plan_slabs(n_slices: int, *, slab_size: int, slab_overlap: int, axis: int = 2) -> list[Slab]:
    """Cover ``n_slices`` with the fewest slabs of at most ``slab_size`` slices such that
    neighbours share exactly ``slab_overlap`` slices; thicknesses differ by at most one."""
    if slab_size < 1:
        raise InputError(f"slab size must be >= 1 slice, got {slab_size}")
    if not 0 <= slab_overlap < slab_size:
        raise InputError(f"slab overlap must be in [0, slab size); got {slab_overlap} with "
                         f"size {slab_size}")
    if slab_size >= n_slices:
        return [Slab(0, 0, n_slices, axis)]
    step = slab_size - slab_overlap
    n = math.ceil((n_slices - slab_overlap) / step)
    # n advances of (n_slices − overlap) / n slices each, as equal as integers allow
    widths = [(n_slices - slab_overlap) // n + (i < (n_slices - slab_overlap) % n) for i in range(n)]
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
    return [Slab(i, int(a), int(a) + w + slab_overlap, axis)
            for i, (a, w) in enumerate(zip(starts, widths))]


def slab_overlaps(slabs: list[Slab]) -> list[int]:
    """Slices shared by each pair of neighbouring slabs (the overlap actually used)."""
    return [max(0, a.stop - b.start) for a, b in zip(slabs, slabs[1:])]


def _best_permutation(ref: np.ndarray, ref_frac: np.ndarray, new: np.ndarray,
                      new_frac: np.ndarray) -> np.ndarray:
    """(V, K) permutation of ``new`` fibres that best matches ``ref``.

    A pairing scores |cos| × (f_ref f_new + 10⁻³ (f_ref + f_new)): pairing a strong fibre with
    an empty one (whose direction is arbitrary, possibly parallel) scores almost nothing, so
    strong fibres are matched to strong fibres.
    """
    k = ref.shape[1]
    perms = np.array(list(itertools.permutations(range(k))))            # (P, K)
    cos = np.abs(np.einsum("vkd,vmd->vkm", ref, new))                    # (V, K, K)
    score = np.stack([(cos[:, np.arange(k), p] * (ref_frac * new_frac[:, p]
                                                    + 1e-3 * (ref_frac + new_frac[:, p]))).sum(1)
                      for p in perms], 1)                                # (V, P)
    return perms[np.argmax(score, axis=1)]


def stitch_slabs(parts: list[PrismFit | None], slabs: list[Slab], mask: np.ndarray) -> PrismFit:
    """Blend slab fits into one :class:`PrismFit` over ``mask`` (see module docstring).

    parts : one fit per slab (None for a slab without mask voxels), in the order of ``slabs``.
    The overlaps are read from the slabs themselves, so the blend always uses the geometry
    that was fitted.
    """
    mask = np.asarray(mask, dtype=bool)
    nv = int(mask.sum())
    ids = np.full(mask.shape, -1, dtype=np.int64)
    ids[mask] = np.arange(nv)
    first = next((p for p in parts if p is not None), None)
    if first is None:
        raise InputError("the mask is empty: no voxel to fit")
    k, n = first.n_fibres, first.predicted.shape[1]
    acc = {"w": np.zeros(nv), "s0": np.zeros(nv), "fractions": np.zeros((nv, 3 + k)),
           "f_in": np.zeros((nv, k)), "predicted": np.zeros((nv, n), dtype=np.float32), "bias": np.zeros(nv),
           "residual_rms": np.zeros(nv), "dirs": np.zeros((nv, k, 3))}
    ref = np.zeros((nv, k, 3))
    ref_frac = np.zeros((nv, k))
    seen = np.zeros(nv, dtype=bool)
    ov = slab_overlaps(slabs)
    before = dict(zip((s.index for s in slabs), [0] + ov))
    after = dict(zip((s.index for s in slabs), ov + [0]))
    used = [(p, s) for p, s in zip(parts, slabs) if p is not None]
    for p, s in used:
        w_axis = s.weights(before[s.index], after[s.index])
        sub_ids = ids[s.slicer()][p.mask]
        coords = np.nonzero(p.mask)[s.axis]
        w = w_axis[coords]
        dirs, ffrac, fin = p.directions, p.fibre_fractions, p.f_in
        old = seen[sub_ids]
        if old.any():
            perm = _best_permutation(ref[sub_ids[old]], ref_frac[sub_ids[old]], dirs[old], ffrac[old])
            dirs, ffrac, fin = dirs.copy(), ffrac.copy(), fin.copy()
            dirs[old] = np.take_along_axis(dirs[old], perm[..., None], axis=1)
            ffrac[old] = np.take_along_axis(ffrac[old], perm, axis=1)
            fin[old] = np.take_along_axis(fin[old], perm, axis=1)
            sign = np.sign(np.einsum("vkd,vkd->vk", ref[sub_ids[old]], dirs[old]))
            dirs[old] *= np.where(sign == 0, 1, sign)[..., None]
        fresh = sub_ids[~old]
        ref[fresh] = dirs[~old]
        ref_frac[fresh] = ffrac[~old]
        seen[sub_ids] = True
        acc["w"][sub_ids] += w
        acc["s0"][sub_ids] += w * p.s0
        acc["fractions"][sub_ids, :3] += w[:, None] * p.fractions[:, :3]
        acc["fractions"][sub_ids, 3:] += w[:, None] * ffrac
        acc["f_in"][sub_ids] += w[:, None] * fin
        acc["predicted"][sub_ids] += w[:, None].astype(np.float32) * p.predicted
        acc["bias"][sub_ids] += w * p.bias
        acc["residual_rms"][sub_ids] += w * p.residual_rms
        acc["dirs"][sub_ids] += (w[:, None] * ffrac + 1e-12)[..., None] * dirs
    wsum = np.maximum(acc["w"], 1e-12)
    avg = lambda a: a / wsum.reshape((-1,) + (1,) * (a.ndim - 1))  # noqa: E731
    # the (V, N) prediction is blended in place, in float32 (a float64 average of a whole-brain
    # prediction alone would be 1.7 GB)
    predicted = acc.pop("predicted")
    predicted /= wsum.astype(np.float32)[:, None]
    dirs = acc["dirs"] / np.maximum(np.linalg.norm(acc["dirs"], axis=-1, keepdims=True), 1e-12)
    fractions = avg(acc["fractions"])
    # blending can bring two fibres of a voxel within the merge angle (slabs that resolved one
    # fibre differently): merge them as the per-slab fit does, then re-sort
    dirs, ffrac, fin = sort_fibres(*merge_parallel(dirs, fractions[:, 3:], avg(acc["f_in"])))
    fractions[:, 3:] = ffrac
    info = {"slabs": [{"index": s.index, "start": s.start, "stop": s.stop, **{
        key: p.info[key] for key in ("iterations", "final_loss", "seconds", "voxels")},
        # kept for the report: loss against iteration per slab, and where each slab ran
        **{key: p.info[key] for key in ("loss_history", "device") if key in p.info}}
        for p, s in used]}
    info["seconds"] = float(sum(p.info["seconds"] for p, _ in used))
    info["iterations"] = int(max(p.info["iterations"] for p, _ in used))
    info["voxel_iterations"] = int(sum(p.info["voxels"] * p.info["iterations"] for p, _ in used))
    return PrismFit(
        mask=mask, s0=avg(acc["s0"]), fractions=fractions, directions=dirs, f_in=fin,
        predicted=predicted, bias=avg(acc["bias"]),
        meas_scale=np.concatenate([p.meas_scale for p, _ in used]),
        meas_offset=np.concatenate([p.meas_offset for p, _ in used]),
        sigma=np.concatenate([p.sigma for p, _ in used]),
        residual_rms=avg(acc["residual_rms"]), config=first.config, info=info)
