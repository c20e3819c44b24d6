"""Read what failed out of a pydra cache: one :class:`Failure` per failed task.

pydra leaves, in each failed job's folder, ``_error.pklz`` (the traceback as text, the time)
and ``_job.pklz`` (the job: node name, split index, task with its inputs). Workflow jobs fail
too, with an error that only lists their failed tasks; they are reported only when no task
failure explains them (e.g. a worker process that died without writing an error).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle as cp

logger = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|Fault|Interrupt|Exit)): (.+)$")
#: ``package.module.SomeName: message`` — an exception line whatever the class is called
_DOTTED_LINE = re.compile(r"^\s*(?:[a-z_]\w*\.)+([A-Z]\w*): (.+)$")
#: What an exception that names no cause means for a prismflow user
_HINTS = {"BrokenProcessPool": "a worker process died (out of memory, or killed)"}


@dataclass
class Failure:
    """One failed job.

    node : workflow node name (``fit_slab``); index : split index or None; task : task class
    name (``FitSlab``); what : first line of the task's docstring (what it does);
    inputs : input name → value; traceback : the error text pydra recorded; time : time of
    the crash (``YYYYmmdd-HHMMSS``); cache_dir : the job's folder; source_files : files
    outside the cache that this job's inputs derive from (the BIDS inputs, for a subject);
    workflow : True for a workflow job.
    """

    node: str
    index: int | None
    task: str
    what: str
    inputs: dict
    traceback: str
    time: str
    cache_dir: Path
    source_files: list[str] = field(default_factory=list)
    workflow: bool = False

    @property
    def label(self) -> str:
        """``fit_slab[2]``."""
        return self.node + (f"[{self.index}]" if self.index is not None else "")

    @property
    def error_line(self) -> str:
        """The last ``SomeError: message`` line of the traceback."""
        return first_error_line(self.traceback)


def first_error_line(text: str) -> str:
    """The last ``SomeError: message`` line of ``text`` (else its last non-empty line)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    hits = [m for m in (_ERROR_LINE.match(ln) or _DOTTED_LINE.match(ln) for ln in lines) if m]
    if hits:
        name, msg = hits[-1].groups()
        hint = f" [{_HINTS[name]}]" if name in _HINTS else ""
        return f"{name}: {msg.strip()}{hint}"
    return lines[-1].strip() if lines else "unknown error"


def plain(text: str) -> str:
    """Docstring text without reST markup (``:func:`x``` → ``x``, double backticks → none)."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    return text.replace("``", "")


def _load(path: Path):
    with open(path, "rb") as fh:
        return cp.load(fh)


def _paths_in(value, depth: int = 0):
    """Absolute file paths inside an input value (fileformats objects, paths, containers)."""
    if depth > 4 or value is None:
        return
    fspaths = getattr(value, "fspaths", None)
    if fspaths is not None:
        yield from (Path(p) for p in fspaths)
    elif isinstance(value, (str, Path)):
        p = Path(value)
        if p.is_absolute() and len(str(p)) < 4096 and p.exists():
            yield p
    elif isinstance(value, dict):
        for v in value.values():
            yield from _paths_in(v, depth + 1)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _paths_in(v, depth + 1)


def _task_inputs(task) -> dict:
    import attrs

    try:
        values = attrs.asdict(task, recurse=False)
    except Exception:  # not an attrs task
        return {}
    return {k: v for k, v in values.items() if k != "function" and not k.startswith("_")}


class _Sources:
    """Walks job inputs back through the cache to the files they came from."""

    def __init__(self, cache_root: Path):
        self.root = cache_root.resolve()
        self.memo: dict[str, list[str]] = {}

    def of_inputs(self, inputs: dict) -> list[str]:
        found: list[str] = []
        for value in inputs.values():
            for p in _paths_in(value):
                rp = p.resolve()
                try:
                    rel = rp.relative_to(self.root)
                except ValueError:
                    found.append(str(p))
                    continue
                found += self.of_job_dir(self.root / rel.parts[0])
        return sorted(set(found))

    def of_job_dir(self, job_dir: Path) -> list[str]:
        key = job_dir.name
        if key not in self.memo:
            self.memo[key] = []  # guards against cycles
            try:
                job = _load(job_dir / "_job.pklz")
                self.memo[key] = self.of_inputs(_task_inputs(job.task))
            except Exception as err:  # a partial or foreign folder: no provenance
                logger.debug("no provenance from %s: %s", job_dir, err)
        return self.memo[key]


def _failure(job_dir: Path, sources: _Sources) -> Failure | None:
    try:
        err = _load(job_dir / "_error.pklz")
    except Exception as exc:  # unreadable error file: report what we can
        err = {"error message": [f"(unreadable _error.pklz: {exc})"]}
    try:
        job = _load(job_dir / "_job.pklz")
        task, node, index = job.task, job.name, job.state_index
    except Exception:
        task, node, index = None, job_dir.name.split("-")[0], None
    if node == "main" and task is not None:  # the top job: name it after what it runs
        inner = getattr(task, "defn", None)  # pydra wraps a split task in a 'Split' workflow
        task = inner if inner is not None and type(task).__name__ == "Split" else task
        node = type(task).__name__
    message = err.get("error message", "")
    text = "".join(message) if isinstance(message, (list, tuple)) else str(message)
    doc = (type(task).__doc__ or "").strip().splitlines() if task is not None else []
    inputs = _task_inputs(task) if task is not None else {}
    return Failure(node=node, index=index, task=type(task).__name__ if task else "?",
                   what=plain(doc[0]).rstrip(".") if doc else "", inputs=inputs, traceback=text,
                   time=str(err.get("time of crash", "")), cache_dir=job_dir,
                   source_files=sources.of_inputs(inputs),
                   workflow=job_dir.name.startswith("workflow-"))


def collect_failures(cache_root: str | Path, since: float = 0.0) -> list[Failure]:
    """Failed jobs whose error was written at or after ``since`` (a ``time.time()``).

    Task failures come first, in time order; workflow failures are included only when no
    task failure was found, and then without the outermost wrapper when inner ones exist.
    """
    root = Path(cache_root)
    if not root.is_dir():
        return []
    sources = _Sources(root)
    tasks, workflows = [], []
    for err in root.glob("*/_error.pklz"):
        try:
            if err.stat().st_mtime < since:
                continue
        except FileNotFoundError:
            continue
        f = _failure(err.parent, sources)
        if f is not None:
            (workflows if f.workflow else tasks).append((err.stat().st_mtime, f))
    if tasks:
        return [f for _, f in sorted(tasks, key=lambda x: x[0])]
    ordered = [f for _, f in sorted(workflows, key=lambda x: x[0])]
    return ordered[:-1] if len(ordered) > 1 else ordered  # the outer wrapper fails last
