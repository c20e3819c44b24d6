"""Render report sections into one self-contained HTML page (jinja2; figures are data URIs).

A section is ``{"id", "title", "caption", "items": [...]}``; an item is one of
``{"kind": "img", "uri", "alt"}``, ``{"kind": "table", "header", "rows"}``,
``{"kind": "text", "text"}``, ``{"kind": "pre", "title", "text"}``, ``{"kind": "link", "href",
"text"}`` or ``{"kind": "refs", "refs": [{"text", "doi", "url"}]}``.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from .. import __version__

#: Lines of a crash report shown in the page (the file path is always given).
CRASH_LINES = 60


def render(title: str, subtitle: str, blocks: list[dict]) -> str:
    """The page for ``blocks`` = ``[{"name": str | None, "sections": [section, ...]}]``."""
    import jinja2

    text = resources.files("prismflow").joinpath("data/report.html.j2").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    nav, seen = [], set()
    for b, block in enumerate(blocks):
        block.setdefault("name", None)
        block["anchor"] = f"block-{b}"
        for s in block["sections"]:
            s.setdefault("klass", "")
            s["anchor"] = s["id"] if len(blocks) == 1 else f"{s['id']}-{b}"
            if s["id"] not in seen:
                seen.add(s["id"])
                nav.append({"id": s["anchor"], "title": s["title"]})
    return env.from_string(text).render(title=title, subtitle=subtitle, blocks=blocks, nav=nav,
                                        version=__version__)


def write_atomic(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def run_section(run: dict) -> dict:
    """The "This run" section: command, run id, inputs and the time each workflow step took.

    run : ``{"command", "run_id", "workflow_seconds", "inputs": {name: path},
    "steps": [{"name", "jobs", "seconds"}]}`` (all keys optional).
    """
    rows = [("command", run.get("command", "?")), ("run id", run.get("run_id", "?"))]
    if run.get("workflow_seconds") is not None:
        rows.append(("workflow wall time", f"{run['workflow_seconds']:.1f} s"))
    for k, v in (run.get("inputs") or {}).items():
        if v:
            rows.append((f"input {k}", v))
    items = [{"kind": "table", "header": ["", ""], "rows": [[str(a), str(b)] for a, b in rows]}]
    steps = run.get("steps") or []
    if not steps and run.get("workflow_seconds") is not None:
        items.append({"kind": "text", "text": "No task ran: every result was reused from the "
                      "work directory's cache."})
    if steps:
        items.append({"kind": "table", "header": ["workflow step", "jobs (all series of the run)",
                                                  "time (s, summed over jobs)"],
                      "rows": [[s["name"], str(s["jobs"]),
                                "cached" if s.get("cached") else f"{s['seconds']:.1f}"]
                               for s in steps]})
    return {"id": "run", "title": "This run", "caption": "Time per workflow step (wall clock "
            "from submission to result, several jobs may overlap; 'cached' = reused from the "
            "work directory). Good: no step much slower than on comparable data.", "items": items}


def errors_section(crash_reports: list[Path], run_id: str = "") -> dict:
    """The "Errors" section: every crash report of this run, with its path and first lines."""
    items = []
    for path in crash_reports:
        lines = Path(path).read_text(errors="replace").splitlines()
        more = len(lines) - CRASH_LINES
        items.append({"kind": "pre", "title": str(path),
                      "text": "\n".join(lines[:CRASH_LINES]) + (f"\n… {more} more lines"
                                                                 if more > 0 else "")})
    if not items:
        items.append({"kind": "text", "text": f"No crash report for this run{(' (' + run_id + ')') if run_id else ''}."})
    cap = ("Good: no crash report. Otherwise each report's path and first lines are shown; the "
           "full text is in the file." if crash_reports else "Good: no crash report.")
    return {"id": "errors", "title": "Errors", "caption": cap, "items": items,
            "klass": "errors-found" if crash_reports else ""}


def crash_reports_of(log_dir: str | Path) -> list[Path]:
    """Crash reports written under ``log_dir`` (``crash-*.txt``, sorted)."""
    log_dir = Path(log_dir)
    return sorted(log_dir.glob("crash-*.txt")) if log_dir.is_dir() else []


def series_name(path: str | Path) -> str:
    """``sub-01_ses-a_dwi.nii.gz`` → ``sub-01_ses-a_dwi``."""
    return re.sub(r"\.nii(\.gz)?$", "", Path(path).name)
