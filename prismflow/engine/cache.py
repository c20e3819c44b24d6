"""Keep a pydra cache usable after a failed or killed run.

Why this exists (pydra 1.0a12, read from ``pydra/engine/job.py`` and ``submitter.py``):

* A failed job leaves ``<cache>/<task>-<checksum>/_result.pklz`` with ``errored=True`` and an
  ``_error.pklz``. On a rerun the parent process asks ``Job.result()`` before the worker has
  re-run the job, reads that stale result and *latches* ``job._errored = True``; the job is
  then reported failed even when its rerun succeeds (the run ends with "Workflow … failed"
  and an "… NOT RETRIEVED" message, because the rerun has meanwhile deleted the
  ``_error.pklz`` that the message wants to read). Workflow jobs, which run in the parent,
  hit this every time; task jobs hit it whenever the parent polls before the worker starts.
* A killed run (``kill -9``, out of memory, a cluster time limit) leaves ``.lock`` files next
  to the job folders, ``<uid>_info.json`` markers and job folders without a result. Whether a
  later run can take those locks over depends on the installed ``filelock`` (older releases
  never break a soft lock; newer ones only when the holder is a dead process on this host).

:func:`lease_cache` therefore takes a lease on the cache for the length of a run. The first
run to take it while no other prismflow run holds it removes what interrupted or failed runs
left behind (:func:`clean_stale`), so the rerun starts from the finished results only. A run
that finds the cache in use by another live run cleans nothing and shares it, as pydra allows.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: The lease file in the cache root (an ``flock``; the kernel releases it when its holder
#: dies, however it dies).
LEASE_NAME = ".prismflow-run"

_LEASE_FDS: set[int] = set()


def _close_leases_in_child() -> None:
    # A forked worker (cf pool) must not hold the parent's lease: orphaned pool processes
    # outlive a killed parent and would otherwise block cleaning forever.
    for fd in list(_LEASE_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _LEASE_FDS.clear()


os.register_at_fork(after_in_child=_close_leases_in_child)


@dataclass
class CleanReport:
    """What :func:`clean_stale` removed (paths relative to the cache root)."""

    failed: list[str] = field(default_factory=list)       # job folders with an error
    unfinished: list[str] = field(default_factory=list)   # job folders without a result
    locks: list[str] = field(default_factory=list)        # lock files and info markers
    kept_live: list[str] = field(default_factory=list)    # locked by a live process: kept

    @property
    def removed(self) -> int:
        return len(self.failed) + len(self.unfinished) + len(self.locks)


def _lock_holder_alive(lock: Path) -> bool:
    """True when ``lock`` names a live process on this host (filelock ≥ 4 writes
    ``pid\\nhostname[\\nstart]``); an empty or foreign marker cannot prove liveness."""
    try:
        lines = lock.read_text().split()
    except (OSError, UnicodeDecodeError):
        return False
    if len(lines) < 2 or not lines[0].isdigit():
        return False
    pid, host = int(lines[0]), lines[1]
    if host.split("?pidns-")[0] != socket.gethostname():  # filelock marks PID namespaces
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _job_dirs(cache_root: Path):
    for entry in sorted(cache_root.iterdir()):
        if entry.is_dir() and "-" in entry.name and not entry.name.startswith("."):
            yield entry


def job_state(job_dir: Path) -> str:
    """``done``, ``failed`` (an ``_error.pklz``) or ``unfinished`` (no complete result)."""
    if (job_dir / "_error.pklz").exists():
        return "failed"
    result = job_dir / "_result.pklz"
    try:
        if result.stat().st_size > 0:
            return "done"
    except FileNotFoundError:
        pass
    return "unfinished"


def clean_stale(cache_root: str | Path) -> CleanReport:
    """Remove failed and unfinished job folders, and stale locks, from ``cache_root``.

    Call only while no other run uses the cache (:func:`lease_cache` does). A job folder
    whose lock names a live process on this host (a worker orphaned by a killed parent, still
    computing) is kept with its lock: its result will be valid.
    """
    root = Path(cache_root)
    report = CleanReport()
    if not root.is_dir():
        return report
    live = set()
    for lock in sorted(root.glob("*.lock")):
        if _lock_holder_alive(lock):
            live.add(lock.name[:-len(".lock")].removesuffix("_save"))
            report.kept_live.append(lock.name)
            continue
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        report.locks.append(lock.name)
    for info in sorted(root.glob("*_info.json")):  # pydra's "job in progress" markers
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
        report.locks.append(info.name)
    for job_dir in _job_dirs(root):
        if job_dir.name in live:
            continue
        state = job_state(job_dir)
        if state == "done":
            continue
        shutil.rmtree(job_dir, ignore_errors=True)
        (report.failed if state == "failed" else report.unfinished).append(job_dir.name)
    return report


@contextlib.contextmanager
def lease_cache(cache_root: str | Path, *, clean: bool = True):
    """Hold a shared lease on ``cache_root`` for a run; clean it first when no one else does.

    Yields the :class:`CleanReport` (empty when another live run holds the cache).
    """
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LEASE_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    _LEASE_FDS.add(fd)
    report = CleanReport()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            exclusive = True
        except BlockingIOError:
            exclusive = False
        if exclusive and clean:
            report = clean_stale(root)
            if report.removed:
                logger.info("cache %s: removed %d failed and %d unfinished job folder(s) and "
                            "%d stale lock(s) left by an earlier run", root, len(report.failed),
                            len(report.unfinished), len(report.locks))
        elif not exclusive:
            logger.info("cache %s is in use by another prismflow run: sharing it, cleaning "
                        "nothing", root)
        fcntl.flock(fd, fcntl.LOCK_SH)  # downgrade (or wait out another run's cleaning)
        yield report
    finally:
        _LEASE_FDS.discard(fd)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
