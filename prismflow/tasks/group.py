"""Group-level tasks: metrics per subject from derivatives, then one table and figures."""

from __future__ import annotations

import json
from pathlib import Path

from fileformats.generic import Directory, File
from ._define import python_task


@python_task(outputs=["rows"])
def SubjectMetrics(files: list[File]) -> File:
    """Tidy metric rows of one subject's derivatives, as ``rows.json``."""
    from prismflow.reports.group import subject_metrics

    out = Path("rows.json").absolute()
    out.write_text(json.dumps(subject_metrics([str(f) for f in files])))
    return out


@python_task(outputs=["table", "figures", "report"])
def GroupReport(rows: list[File]) -> tuple[File, Directory, File]:
    """Concatenate the rows into ``prismflow_metrics.tsv``, draw one figure per metric and put
    them on one page, ``report.html``."""
    from prismflow.reports.group import plot_metrics, write_group_report, write_table

    allrows = [r for f in rows for r in json.loads(Path(f).read_text())]
    table = write_table(allrows, Path("prismflow_metrics.tsv").absolute())
    figs = Path("figures").absolute()
    paths = plot_metrics(table, figs)
    report = write_group_report(table, paths, Path("report.html").absolute())
    return table, figs, report
