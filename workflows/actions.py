"""The registry of recipe actions: each one adds its nodes to the participant workflow.

An action is a function ``(ctx, params) -> None`` registered with :func:`action`; it reads the
lazy outputs it needs from ``ctx`` (a :class:`Context`) and stores what it produces there. The
participant workflow dispatches the recipe's steps through :data:`ACTIONS`, never through an
if/elif chain, so a new action is one decorated function plus its schema entry in
:mod:`prismflow.workflows.recipes`.
"""

from __future__ import annotations

import typing as ty
from dataclasses import dataclass, field

from pydra.compose import workflow

from prismflow.tasks import baselines as tb
from prismflow.tasks import preprocess as tp
from prismflow.tasks import prism as tpr
from prismflow.tasks import tracking as tt

#: action name -> function(ctx, params)
ACTIONS: dict[str, ty.Callable[["Context", dict], None]] = {}


def action(name: str):
    """Register the decorated function as the builder of recipe action ``name``."""
    def deco(fn):
        ACTIONS[name] = fn
        return fn
    return deco


@dataclass
class Context:
    """What the steps so far have produced (pydra lazy outputs) and the run's settings."""

    dwi: ty.Any
    bval: ty.Any
    bvec: ty.Any
    dseg: ty.Any
    seed: int
    device: str
    n_threads: int
    slab_size: int | None
    slab_overlap: int | None
    mem_gb: float | None = None
    mask: ty.Any = None
    prism_maps: ty.Any = None
    prism_peaks: ty.Any = None
    prism_scanner_peaks: ty.Any = None
    prism_info: ty.Any = None
    baseline_peaks: ty.Any = None
    baseline_info: ty.Any = None
    baseline_scanner_peaks: ty.Any = None
    baseline_specs: dict = field(default_factory=dict)
    tractograms: ty.Any = None
    connectomes: ty.Any = None
    derivatives: ty.Any = None


@action("mask")
def _mask(ctx: Context, p: dict) -> None:
    node = workflow.add(tp.PrepareDwi(in_dwi=ctx.dwi, in_bval=ctx.bval, in_bvec=ctx.bvec,
                                      mask_method=p["method"],
                                      median_radius_vox=p["median_radius_vox"],
                                      numpass=p["numpass"]), name="prepare")
    ctx.dwi, ctx.bval, ctx.bvec, ctx.mask = node.dwi, node.bval, node.bvec, node.mask


@action("denoise")
def _denoise(ctx: Context, p: dict) -> None:
    ctx.dwi = workflow.add(tp.Denoise(in_dwi=ctx.dwi, mask=ctx.mask), name="denoise").dwi


@action("degibbs")
def _degibbs(ctx: Context, p: dict) -> None:
    ctx.dwi = workflow.add(tp.Degibbs(in_dwi=ctx.dwi), name="degibbs").dwi


@action("prism")
def _prism(ctx: Context, p: dict) -> None:
    # explicit command-line options win over the recipe; None leaves VolumeConfig's default
    volume = {"slab_size": ctx.slab_size if ctx.slab_size is not None else p["slab_size_vox"],
              "slab_overlap": (ctx.slab_overlap if ctx.slab_overlap is not None
                               else p["slab_overlap_vox"]),
              "mem_gb": ctx.mem_gb,
              "warm_start": None if p["warm_start"] == "none" else p["warm_start"]}
    config = {"n_fibres": p["n_fibres"], "n_iter": p["n_iter"], "loss": p["loss"],
              **p["options"], "seed": ctx.seed, "device": ctx.device}
    plan = workflow.add(tpr.PlanVolume(dwi=ctx.dwi, bval=ctx.bval, bvec=ctx.bvec, mask=ctx.mask,
                                       config=config, volume=volume), name="plan_volume")
    fit = workflow.add(
        tpr.FitSlab(dwi=ctx.dwi, bval=ctx.bval, bvec=ctx.bvec, mask=ctx.mask, plan=plan.plan,
                    n_threads=ctx.n_threads)
        .split(slab_index=plan.slab_indices).combine("slab_index"),
        name="fit_slab")
    st = workflow.add(tpr.StitchVolume(parts=fit.part, plan=plan.plan, dwi=ctx.dwi,
                                       bval=ctx.bval, bvec=ctx.bvec),
                      name="stitch_volume")
    ctx.prism_maps, ctx.prism_peaks, ctx.prism_info = st.maps, st.peaks, st.info
    ctx.prism_scanner_peaks = st.peaks_scanner


@action("baseline")
def _baseline(ctx: Context, p: dict) -> None:
    # all baseline steps share one node split over (method, options); see add_baselines
    ctx.baseline_specs[p["method"]] = {"n_peaks": p["n_peaks"], **p["options"]}


def add_baselines(ctx: Context) -> None:
    """Add the one baseline node (split over the methods collected so far), once."""
    if not ctx.baseline_specs or ctx.baseline_peaks is not None:
        return
    methods = list(ctx.baseline_specs)
    node = workflow.add(
        tb.FitBaseline(dwi=ctx.dwi, bval=ctx.bval, bvec=ctx.bvec, mask=ctx.mask,
                       n_threads=ctx.n_threads, seed=ctx.seed)
        .split(("method", "options"), method=methods,
               options=[ctx.baseline_specs[m] for m in methods])
        .combine(["method", "options"]),
        name="baselines")
    ctx.baseline_peaks, ctx.baseline_info = node.peaks, node.info
    ctx.baseline_scanner_peaks = node.peaks_scanner


@action("tracking")
def _tracking(ctx: Context, p: dict) -> None:
    cfg = {k: p[k] for k in ("step_mm", "angle_deg", "seeds_per_voxel", "min_length_mm",
                             "max_length_mm", "peak_threshold", "min_fraction", "seed_fixel",
                             "interpolation") if k in p}
    add_baselines(ctx)
    if p["tracker"] == "mrtrix":   # tckgen FACT reads scanner-frame peaks
        prism, baselines = ctx.prism_scanner_peaks, ctx.baseline_scanner_peaks
        task = tt.TrackPeaksMrtrix
    else:                          # dipy EuDX and the fixel tracker work in the bvec frame
        prism, baselines = ctx.prism_peaks, ctx.baseline_peaks
        task = tt.TrackFixels if p["tracker"] == "fixel" else tt.TrackPeaks
    sel = workflow.add(tt.SelectPeaks(sources=list(p["sources"]), prism=prism,
                                      baselines=baselines), name="select_peaks")
    tr = workflow.add(task(mask=ctx.mask, config=cfg, seed=ctx.seed)
                      .split(peaks=sel.peaks).combine("peaks"), name="tracking")
    ctx.tractograms = tr.tractogram


@action("connectome")
def _connectome(ctx: Context, p: dict) -> None:
    if ctx.dseg is None:  # no parcellation for this subject: nothing to do
        return
    cn = workflow.add(tt.BuildConnectome(dseg=ctx.dseg).split(tractogram=ctx.tractograms)
                      .combine("tractogram"), name="connectome")
    ctx.connectomes = cn.connectome
