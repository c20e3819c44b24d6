"""The derivatives sink: one series' workflow outputs laid out under their BIDS names.

The task writes a staged tree (``derivatives/sub-…/dwi/…`` with a JSON sidecar per file) in its
own folder; the command line only copies that tree into the output folder
(:func:`prismflow.io.derivatives.publish`). Names, descriptions and units come from the one
table, :data:`prismflow.io.derivatives.OUTPUTS`.
"""

from __future__ import annotations

from pathlib import Path

from fileformats.generic import Directory, File

from ._define import python_task


@python_task(outputs=["derivatives"])
def StageDerivatives(series: dict, seed: int, recipe: dict, dwi: File, mask: File | None = None,
                     prism_maps: Directory | None = None, prism_info: File | None = None,
                     baseline_peaks: list | None = None, baseline_info: list | None = None,
                     tractograms: list | None = None,
                     connectomes: list | None = None) -> Directory:
    """:func:`prismflow.io.derivatives.stage_participant` into ``derivatives/``."""
    from prismflow.io.derivatives import stage_participant

    out = Path("derivatives").absolute()
    stage_participant(out, series=series, seed=seed, recipe=recipe, dwi=dwi, mask=mask,
                      prism_maps=prism_maps, prism_info=prism_info,
                      baseline_peaks=baseline_peaks, baseline_info=baseline_info,
                      tractograms=tractograms, connectomes=connectomes)
    out.mkdir(exist_ok=True)
    return out
