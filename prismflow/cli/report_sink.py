"""Write ``sub-<label>.html`` at the output root for every subject of a participant run."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

logger = logging.getLogger("prismflow")


def write_reports(out_dir: Path, inputs: list, outputs, *, run_id: str, command: str,
                  seconds: float | None, steps: list[dict], error: str | None = None,
                  bids_dir: Path | None = None) -> list[Path]:
    """One report per subject of ``inputs`` (the run's series, in workflow order).

    outputs : the workflow's outputs (split over series; ``outputs.report[i]`` is the i-th
    series' sections file), or None when the workflow failed.
    """
    from prismflow.io.derivatives import derivative_path
    from prismflow.reports.html import crash_reports_of, series_name
    from prismflow.reports.subject import write_subject_report

    # failures that name no single subject are reported under <out>/log/<run_id>/: every page
    run_wide = crash_reports_of(out_dir / "log" / run_id)
    by_subject: dict[str, list[int]] = defaultdict(list)
    for i, dwi in enumerate(inputs):
        by_subject[dwi.subject].append(i)
    written = []
    for subject, idx in by_subject.items():
        series, crashes, files = [], list(run_wide), {}
        for i in idx:
            dwi = inputs[i]
            sections = None
            if outputs is not None:
                sections = outputs.report[i]
            series.append((series_name(dwi.dwi), str(sections) if sections else None))
            base = out_dir / f"sub-{subject}"
            if dwi.session:
                base = base / f"ses-{dwi.session}"
            crashes += crash_reports_of(base / "log" / run_id)
            for key in ("dwi", "bval", "bvec", "dseg"):
                value = getattr(dwi, key, None)
                if value:
                    try:
                        value = Path(value).relative_to(bids_dir) if bids_dir else value
                    except ValueError:
                        pass
                    files[f"{key} ({series_name(dwi.dwi)})" if len(idx) > 1 else key] = str(value)
        path = out_dir / derivative_path({"subject": subject, "extension": ".html"})
        written.append(write_subject_report(
            path, subject, series, crash_reports=sorted(set(crashes)), error=error,
            run={"command": command, "run_id": run_id, "workflow_seconds": seconds,
                 "inputs": files, "steps": steps}))
        logger.info("report: %s", path)
    return written
