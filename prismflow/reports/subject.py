"""``sub-<label>.html``: the series reports of one subject plus this run's timings and errors.

The heavy part (figures) is made per series by the participant workflow
(:func:`prismflow.reports.participant.build_sections`, saved as JSON); this module only puts the
saved sections of a subject's series on one page with the run's facts, so it also works when the
workflow failed and some series have no sections at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from .html import errors_section, render, run_section, write_atomic


def write_subject_report(path: str | Path, subject: str, series: list[tuple[str, str | None]],
                         *, run: dict, crash_reports: list[Path],
                         error: str | None = None) -> Path:
    """Write the page for ``subject``.

    series : (series name, path of its ``report_sections.json`` or None when it did not finish).
    run : see :func:`prismflow.reports.html.run_section`.
    crash_reports : crash files of this run for this subject; error : the run's error line.
    """
    blocks = []
    many = len(series) > 1
    for name, sections_path in series:
        if sections_path and Path(sections_path).is_file():
            sections = json.loads(Path(sections_path).read_text())
        else:
            sections = [{"id": "summary", "title": "Summary", "caption": "This series did not "
                         "finish; see Errors below.", "items": [
                             {"kind": "text", "text": f"No report for {name}: the workflow "
                              "stopped before its report step."}]}]
        blocks.append({"name": name if many else None, "sections": sections})
    tail = [run_section(run), errors_section(crash_reports, run.get("run_id", ""))]
    if error:
        tail[-1]["items"].insert(0, {"kind": "pre", "title": "the run stopped with", "text": error})
        tail[-1]["klass"] = "errors-found"
        tail[-1]["caption"] = "The run failed: the error, then each crash report with its path."
    failed = bool(error or crash_reports)
    if many:
        block = {"name": "This run", "sections": tail}
        blocks.insert(0 if failed else len(blocks), block)   # a failure shows first
    else:                    # one series: one block, so section anchors stay plain (#errors)
        # the run's facts sit under the summary; errors too when there are any, else last
        head, rest = blocks[0]["sections"][:1], blocks[0]["sections"][1:]
        facts, errs = tail
        blocks[0]["sections"] = (head + [facts] + ([errs] if failed else []) + rest
                                 + ([] if failed else [errs]))
    status = "failed" if error else "finished"
    subtitle = (f"prismflow participant report · run {run.get('run_id', '?')} {status} · "
                f"{len(series)} series")
    return write_atomic(render(f"sub-{subject}", subtitle, blocks), path)
