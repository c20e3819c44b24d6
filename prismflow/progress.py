"""Progress: one helper for long loops (:class:`Progress`) and one for whole workflows
(:class:`WorkflowProgress`).

:class:`Progress` draws a bar on a terminal or logs a line every quarter of the work. When the
environment variable :data:`HEARTBEAT_ENV` names a folder it also writes a small JSON heartbeat
there (done, total, loss, times), even when its own display is off: that is how a loop running in
a pydra worker process (a slab fit) shows its iterations and ETA in the parent's live display.

:class:`WorkflowProgress` watches a pydra submitter (through the engine's ``progress`` hook) and
shows, with `rich <https://rich.readthedocs.io>`_ on a terminal, the tasks done of those known,
the running tasks and a bar per running slab fit with its ETA; in a non-interactive log it
writes one line per finished task (slab fits included). It also records the wall time of every
workflow step for the participant report.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

#: Environment variable naming the heartbeat folder (set by :class:`WorkflowProgress`).
HEARTBEAT_ENV = "PRISMFLOW_PROGRESS_DIR"
#: Seconds between two heartbeat writes of one loop (writes are tiny but not free).
HEARTBEAT_EVERY_S = 0.5


class Progress:
    """Report progress of ``total`` steps of ``desc``.

    On a terminal (stderr is a TTY and ``enabled``) it redraws one line; otherwise it logs at
    INFO every ``log_every`` fraction of the work. ``close()`` logs a summary line.
    """

    def __init__(self, total: int, desc: str, *, logger: logging.Logger | None = None,
                 enabled: bool = True, log_every: float = 0.25):
        self.total, self.desc = max(int(total), 1), desc
        self.log = logger or logging.getLogger("prismflow")
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.step_every = max(1, int(self.total * log_every))
        self.done = 0
        self.t0 = time.perf_counter()
        self._wall0 = time.time()
        hb = os.environ.get(HEARTBEAT_ENV)
        self._beat_path = (Path(hb) / f"{os.getpid()}-{id(self):x}.json") if hb else None
        self._beat_at = 0.0
        self._status: dict = {}

    def _beat(self, final: bool = False) -> None:
        if self._beat_path is None:
            return
        now = time.perf_counter()
        if not final and now - self._beat_at < HEARTBEAT_EVERY_S:
            return
        self._beat_at = now
        state = {"desc": self.desc, "done": self.done, "total": self.total,
                 "started": self._wall0, "updated": time.time(), "final": final,
                 **{k: v for k, v in self._status.items() if isinstance(v, (int, float, str))}}
        try:  # a heartbeat must never break a fit: write through a rename, ignore I/O errors
            tmp = self._beat_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self._beat_path)
        except OSError:
            self._beat_path = None

    def update(self, n: int = 1, **status) -> None:
        self.done += n
        self._status = status
        self._beat()
        if not self.enabled:
            return
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in status.items())
        if self.tty:
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.desc} [{bar:<30}] {self.done}/{self.total} {extra}")
            sys.stderr.flush()
        elif self.done % self.step_every == 0 or self.done == self.total:
            self.log.info("%s: %d/%d %s", self.desc, self.done, self.total, extra)

    def close(self, summary: str = "") -> float:
        """Finish; returns elapsed seconds."""
        dt = time.perf_counter() - self.t0
        self._beat(final=True)
        if self.enabled and self.tty:
            sys.stderr.write("\n")
        if self.enabled:
            self.log.info("%s: done in %.2f s %s", self.desc, dt, summary)
        return dt


def _has_result(job) -> bool:
    """Whether pydra already holds this job's result (it will be reused, not run)."""
    try:
        return (Path(job.cache_dir) / "_result.pklz").is_file()
    except Exception:  # noqa: BLE001 — a job without a cache folder yet
        return False


def _job_name(job) -> str:
    idx = getattr(job, "state_index", None)
    return f"{job.name}[{idx}]" if idx is not None else job.name


class WorkflowProgress:
    """Live progress of a pydra run, and the wall time of each workflow step.

    Use as a context manager around ``run_task(..., progress=this)``. ``mode``: ``"live"``
    (rich display on stderr), ``"log"`` (one INFO line per finished task) or ``"off"``;
    ``"auto"`` is live on a terminal and log otherwise.
    """

    def __init__(self, mode: str = "auto", *, logger: logging.Logger | None = None,
                 refresh_s: float = 0.5):
        if mode == "auto":
            mode = "live" if sys.stderr.isatty() else "log"
        if mode not in ("live", "log", "off"):
            raise ValueError(f"progress mode must be live, log, off or auto; got {mode!r}")
        self.mode = mode
        self.log = logger or logging.getLogger("prismflow.progress")
        self.refresh_s = refresh_s
        self._graphs: dict[int, object] = {}
        self._started: dict[str, tuple[str, float]] = {}    # checksum -> (name, t)
        self._finished: dict[str, tuple[str, float]] = {}   # checksum -> (name, seconds)
        self._failed: set[str] = set()
        self._cached: set[str] = set()                      # results found before they ran
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._live = None
        self._beat_dir = None
        self._old_env = None
        self.t0 = time.perf_counter()

    # -- engine hook -----------------------------------------------------------------------
    def attach(self, submitter) -> None:
        """Observe ``submitter``: wraps its ``get_runnable_tasks``, which pydra calls after
        every finished job, for every (nested) workflow graph."""
        original = submitter.get_runnable_tasks
        hook = _Hook(self, original)
        submitter.get_runnable_tasks = hook

    def observe(self, graph, runnable) -> None:
        """Record ``graph``'s jobs that started (``runnable``) or finished since last time."""
        now = time.perf_counter()
        lines = []
        with self._lock:
            self._graphs[id(graph)] = graph
            for job in runnable:
                if getattr(job, "is_async", False) or job.checksum in self._started:
                    continue
                self._started[job.checksum] = (_job_name(job), now)
                if _has_result(job):
                    self._cached.add(job.checksum)
            for node in list(getattr(graph, "nodes", [])):
                for job in list(getattr(node, "successful", {}).values()):
                    if getattr(job, "is_async", False) or job.checksum in self._finished:
                        continue
                    name, t = self._started.get(job.checksum, (_job_name(job), now))
                    self._finished[job.checksum] = (name, now - t)
                    lines.append((name, now - t))
                for job in list(getattr(node, "errored", {}).values()):
                    if job.checksum not in self._failed:
                        self._failed.add(job.checksum)
                        self.log.warning("task %s failed", _job_name(job))
        if self.mode == "log":
            done, total = self.counts()
            for i, (name, secs) in enumerate(lines, start=done - len(lines) + 1):
                self.log.info("[%d/%s] %s finished in %.1f s", i, total, name, secs)

    # -- state -----------------------------------------------------------------------------
    def counts(self) -> tuple[int, str]:
        """(tasks finished, tasks known so far as text; ``'?'`` before any graph is seen)."""
        total = 0
        for graph in list(self._graphs.values()):
            for node in list(getattr(graph, "nodes", [])):
                tasks = getattr(node, "_tasks", None)
                if tasks is None:
                    total += 1          # not expanded yet: at least one job
                else:
                    total += sum(1 for j in tasks.values() if not getattr(j, "is_async", False))
        return len(self._finished), (str(max(total, len(self._finished))) if total else "?")

    def running(self) -> list[str]:
        with self._lock:
            return sorted(name for ck, (name, _) in self._started.items()
                          if ck not in self._finished and ck not in self._failed)

    def steps(self) -> list[dict]:
        """Per workflow step (node name): jobs finished, summed wall seconds and whether every
        job's result came from the cache."""
        agg: dict[str, list] = defaultdict(lambda: [0, 0.0, True])
        with self._lock:
            for ck, (name, secs) in self._finished.items():
                a = agg[name.split("[")[0]]
                a[0] += 1
                a[1] += secs
                a[2] = a[2] and ck in self._cached
        return [{"name": k, "jobs": v[0], "seconds": v[1], "cached": v[2]}
                for k, v in agg.items()]

    def heartbeats(self) -> list[dict]:
        """Live loops (slab fits) reported by worker processes: desc, done, total, eta_s."""
        if self._beat_dir is None:
            return []
        out = []
        for f in Path(self._beat_dir).glob("*.json"):
            try:
                st = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if st.get("final") or time.time() - st.get("updated", 0) > 120:
                continue
            el = st["updated"] - st["started"]
            rate = st["done"] / el if el > 0 else 0
            st["eta_s"] = (st["total"] - st["done"]) / rate if rate > 0 else float("nan")
            out.append(st)
        return sorted(out, key=lambda s: s["desc"])

    # -- display ---------------------------------------------------------------------------
    def _render(self):
        from rich.console import Group
        from rich.text import Text

        done, total = self.counts()
        el = time.perf_counter() - self.t0
        parts = [Text(f"prismflow: {done}/{total} tasks done, {el:.0f} s", style="bold")]
        run = self.running()
        if run:
            parts.append(Text("running: " + ", ".join(run[:6])
                              + (f" (+{len(run) - 6})" if len(run) > 6 else "")))
        for hb in self.heartbeats()[:8]:
            frac = hb["done"] / max(hb["total"], 1)
            bar = "█" * int(24 * frac) + "░" * (24 - int(24 * frac))
            eta = hb["eta_s"]
            loss = f" loss {hb['loss']:.4g}" if isinstance(hb.get("loss"), float) else ""
            parts.append(Text(f"  {hb['desc'][:48]:<48} {bar} {hb['done']}/{hb['total']} it"
                              f"{loss}  ETA {eta:.0f} s" if eta == eta else
                              f"  {hb['desc'][:48]:<48} {bar} {hb['done']}/{hb['total']} it"))
        return Group(*parts)

    def _loop(self):
        while not self._stop.wait(self.refresh_s):
            if self._live is not None:
                self._live.update(self._render(), refresh=True)

    def __enter__(self):
        if self.mode == "off":
            return self
        self._beat_dir = tempfile.mkdtemp(prefix="prismflow-progress-")
        self._old_env = os.environ.get(HEARTBEAT_ENV)
        os.environ[HEARTBEAT_ENV] = self._beat_dir   # inherited by local worker processes
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), transient=False,
                              auto_refresh=False)
            self._live.start()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._live is not None:
            self._live.update(self._render())
            self._live.refresh()
            self._live.stop()
        if self._beat_dir is not None:
            import shutil

            shutil.rmtree(self._beat_dir, ignore_errors=True)
            if self._old_env is None:
                os.environ.pop(HEARTBEAT_ENV, None)
            else:
                os.environ[HEARTBEAT_ENV] = self._old_env
        return False


class _Hook:
    """``get_runnable_tasks`` wrapper. pydra pickles the submitter (with this attribute) into
    every job it ships to a worker; there the hook pickles to a plain pass-through, so the
    display (threads, a terminal) never travels."""

    def __init__(self, progress: WorkflowProgress | None, original):
        self.progress, self.original = progress, original

    def __call__(self, graph):
        runnable = self.original(graph)
        if self.progress is not None:
            try:
                self.progress.observe(graph, runnable)
            except Exception:  # noqa: BLE001 — progress must never stop a workflow
                logging.getLogger(__name__).debug("progress hook failed", exc_info=True)
        return runnable

    def __getstate__(self):
        return {"progress": None, "original": self.original}

    def __setstate__(self, state):
        self.__dict__.update(state)
