"""Crash reports, as fMRIPrep writes them: one text file per failed task.

``<output_dir>/sub-<label>[/ses-<label>]/log/<run_id>/crash-<time>-<node>[-<index>].txt`` holds
the task (node name, what it does), the subject, the error line, every input, the pydra job
files and the traceback. A failure that no single subject explains goes to
``<output_dir>/log/<run_id>/``. The pydra ``_job.pklz``/``_error.pklz`` are copied to
``<work_dir>/crash/<run_id>/<job folder>/`` so they outlive the next run, which clears failed
job folders from the cache.
"""

from __future__ import annotations

import datetime as _dt
import logging
import pprint
import re
import shutil
from pathlib import Path

logger = logging.getLogger("prismflow")

_SUB = re.compile(r"(?:^|[_/])sub-([A-Za-z0-9]+)")
_SES = re.compile(r"(?:^|[_/])ses-([A-Za-z0-9]+)")


def subject_dir(failure, out_dir: Path) -> Path:
    """``out_dir/sub-X[/ses-Y]`` when the failure's source files name one subject, else
    ``out_dir``."""
    subs, sess = set(), set()
    for f in failure.source_files:
        name = Path(f).name
        if m := _SUB.search(name):
            subs.add(m.group(1))
            if s := _SES.search(name):
                sess.add(s.group(1))
    if len(subs) != 1:
        return out_dir
    base = out_dir / f"sub-{subs.pop()}"
    return base / f"ses-{sess.pop()}" if len(sess) == 1 else base


def _fmt(value, width: int = 96) -> str:
    text = pprint.pformat(value, width=width, compact=True)
    text = text if len(text) < 4000 else text[:4000] + " … (truncated)"
    return text.replace("\n", "\n    ")


def _keep_pklz(failure, work_dir: Path, run_id: str) -> Path | None:
    dest = work_dir / "crash" / run_id / failure.cache_dir.name
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("_job.pklz", "_error.pklz"):
            if (failure.cache_dir / name).is_file():
                shutil.copy2(failure.cache_dir / name, dest / name)
    except OSError as err:
        logger.warning("could not keep the pydra files of %s: %s", failure.cache_dir, err)
        return None
    return dest


def report_text(failure, *, subject: str, command: str, run_id: str,
                kept: Path | None) -> str:
    """The crash report of one failure."""
    what = failure.what
    lines = [
        "prismflow crash report",
        "",
        f"task:      {failure.label}  ({failure.task}{': ' + what if what else ''})",
        f"subject:   {subject}",
        f"time:      {failure.time}",
        f"error:     {failure.error_line}",
        f"command:   {command}",
        f"run id:    {run_id}",
        f"pydra job: {failure.cache_dir} (_job.pklz: the job and its inputs; _error.pklz)",
    ]
    if kept is not None:
        lines.append(f"           kept as {kept}/ (the next run clears failed job folders)")
    lines += ["", "inputs:"]
    lines += [f"  {k} = {_fmt(v)}" for k, v in failure.inputs.items()] or ["  (none recorded)"]
    if failure.source_files:
        lines += ["", "derived from:"] + [f"  {f}" for f in failure.source_files]
    lines += ["", "traceback:", failure.traceback.rstrip(), ""]
    return "\n".join(lines)


def write_crash_reports(err, out_dir: Path, work_dir: Path, run_id: str, command: str
                        ) -> list[Path]:
    """Write one crash report per failure of ``err`` (an :class:`EngineError`); record their
    paths in ``err.crash_reports`` (the first is named in its message). Never raises."""
    written = []
    for failure in getattr(err, "failures", []):
        try:
            base = subject_dir(failure, out_dir)
            subject = (base.relative_to(out_dir).as_posix() if base != out_dir
                       else "(several or none)")
            stamp = failure.time or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            label = re.sub(r"[^A-Za-z0-9_]+", "-", failure.label).strip("-")
            path = base / "log" / run_id / f"crash-{stamp}-{label}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = _keep_pklz(failure, work_dir, run_id)
            path.write_text(report_text(failure, subject=subject, command=command,
                                        run_id=run_id, kept=kept))
            written.append(path)
        except OSError as exc:  # a report that cannot be written must not hide the error
            logger.warning("could not write a crash report for %s: %s", failure.label, exc)
    if hasattr(err, "crash_reports"):
        err.crash_reports = written
    return written
