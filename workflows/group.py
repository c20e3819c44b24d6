"""The group-level workflow: metrics per subject (split), then one table and figures (combine)."""

from __future__ import annotations

from fileformats.generic import Directory, File
from pydra.compose import workflow

from prismflow.tasks.group import GroupReport, SubjectMetrics


@workflow.define(outputs=["table", "figures", "report"])
def GroupWorkflow(subject_files: list[list[File]]) -> tuple[File, Directory, File]:
    """Compare subjects and methods from derivatives alone.

    Outputs
    -------
    table : File — tidy TSV (subject, session, method, metric, value).
    figures : Directory — one PNG per metric.
    report : File — ``report.html``: every figure and a subject × method table per metric.
    """
    per = workflow.add(SubjectMetrics().split(files=subject_files).combine("files"),
                       name="subject_metrics")
    rep = workflow.add(GroupReport(rows=per.rows), name="group_report")
    return rep.table, rep.figures, rep.report
