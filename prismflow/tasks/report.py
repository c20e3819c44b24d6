"""Report task: the figures and text of one series' participant report."""

from __future__ import annotations

import json
from pathlib import Path

from fileformats.generic import Directory, File

from ._define import python_task


@python_task(outputs=["sections", "report"])
def ParticipantReport(dwi: File, bval: File, bvec: File, mask: File, recipe: dict, seed: int = 0,
                      prism_maps: Directory | None = None, prism_peaks: File | None = None,
                      prism_info: File | None = None, baseline_peaks: list | None = None,
                      baseline_info: list | None = None, tractograms: list | None = None,
                      connectomes: list | None = None) -> tuple[File, File]:
    """Build the report sections (``report_sections.json``, figures embedded) and a
    stand-alone ``report.html``; the BIDS sink adds the run's timings and crash reports and
    writes ``sub-<label>.html``."""
    from prismflow.reports.html import render, series_name, write_atomic
    from prismflow.reports.participant import ParticipantInputs, build_sections

    strs = lambda xs: [str(x) for x in (xs or [])]  # noqa: E731
    inp = ParticipantInputs(
        dwi=str(dwi), bval=str(bval), bvec=str(bvec), mask=str(mask), recipe=recipe, seed=seed,
        prism_maps=str(prism_maps) if prism_maps is not None else None,
        prism_peaks=str(prism_peaks) if prism_peaks is not None else None,
        prism_info=str(prism_info) if prism_info is not None else None,
        baseline_peaks=strs(baseline_peaks), baseline_info=strs(baseline_info),
        tractograms=strs(tractograms), connectomes=strs(connectomes))
    sections = build_sections(inp)
    out = Path("report_sections.json").absolute()
    out.write_text(json.dumps(sections))
    page = write_atomic(render(series_name(dwi), "prismflow participant report",
                               [{"name": None, "sections": sections}]),
                        Path("report.html").absolute())
    return out, page
