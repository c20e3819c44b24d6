"""The participant-level workflow: one DWI series → PRISM maps, baselines, tracts, connectomes.

The top level splits this workflow over the series of the selected participants; inside, PRISM
splits over slabs and combines them (see :mod:`prismflow.workflows.actions`).
"""

from __future__ import annotations

from fileformats.generic import File
from pydra.compose import workflow

from prismflow.tasks.report import ParticipantReport

from prismflow.tasks.sink import StageDerivatives

from .actions import ACTIONS, Context, add_baselines
from .recipes import validate_recipe

OUTPUTS = ["mask", "prism_maps", "prism_peaks", "prism_info", "baseline_peaks",
           "baseline_scanner_peaks", "baseline_info", "tractograms", "connectomes", "derivatives",
           "report"]


@workflow.define(outputs=OUTPUTS)
def ParticipantWorkflow(dwi: File, bval: File, bvec: File, recipe: dict,
                        dseg: File | None = None, seed: int = 0, device: str = "auto",
                        n_threads: int = 1, slab_size: int | None = None,
                        slab_overlap: int | None = None, mem_gb: float | None = None,
                        series: dict | None = None):
    """Run the recipe's steps on one DWI series.

    Outputs
    -------
    mask : File — the brain mask.
    prism_maps : Directory or None — one NIfTI per PRISM map (``maps/<name>.nii.gz``).
    prism_peaks, prism_info : File or None — PRISM peaks (X, Y, Z, 3K) and its settings.
    baseline_peaks, baseline_scanner_peaks, baseline_info : list[File] or None — per baseline
        method: peaks in the bvec frame (tracking), in the scanner frame (derivatives), settings.
    tractograms : list[File] or None — ``tracts_<source>.trk`` per tracked peaks source.
    connectomes : list[File] or None — ``connectome_<source>.csv`` when a parcellation exists.
    derivatives : Directory — the outputs above under their BIDS names, with sidecars (the
        sink; ``series`` gives the entities, sources and parcellation of the series).
    report : File — the report sections (``report_sections.json``) of this series.
    """
    rec = validate_recipe(recipe, source=recipe.get("name", "<recipe>"))
    ctx = Context(dwi=dwi, bval=bval, bvec=bvec, dseg=dseg, seed=seed, device=device,
                  n_threads=n_threads, slab_size=slab_size, slab_overlap=slab_overlap,
                  mem_gb=mem_gb)
    if not rec.steps_of("mask"):
        ACTIONS["mask"](ctx, {"method": "median_otsu", "median_radius_vox": 4, "numpass": 4})
    for step in rec.steps:
        ACTIONS[step.action](ctx, step.params)
    add_baselines(ctx)
    ctx.derivatives = workflow.add(StageDerivatives(
        series=series or {"entities": {"subject": "unknown"}}, seed=seed,
        recipe={"steps": [{"action": s.action, **s.params} for s in rec.steps]}, dwi=dwi,
        mask=ctx.mask, prism_maps=ctx.prism_maps, prism_info=ctx.prism_info,
        baseline_peaks=ctx.baseline_scanner_peaks, baseline_info=ctx.baseline_info,
        tractograms=ctx.tractograms, connectomes=ctx.connectomes), name="derivatives").derivatives
    report = workflow.add(ParticipantReport(
        dwi=ctx.dwi, bval=ctx.bval, bvec=ctx.bvec, mask=ctx.mask, seed=seed,
        recipe={"name": rec.name, "steps": [{"action": s.action, **s.params} for s in rec.steps]},
        prism_maps=ctx.prism_maps, prism_peaks=ctx.prism_peaks, prism_info=ctx.prism_info,
        baseline_peaks=ctx.baseline_peaks, baseline_info=ctx.baseline_info,
        tractograms=ctx.tractograms, connectomes=ctx.connectomes), name="report")
    return tuple(getattr(ctx, name) for name in OUTPUTS[:-1]) + (report.sections,)
