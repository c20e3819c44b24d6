"""Run a pydra task or workflow with a named worker (``cf``, ``dask``, ``slurm``, ``debug``)."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("NO_ET", "1")  # pydra: skip the online version check

from pydra.engine.submitter import Submitter  # noqa: E402

logger = logging.getLogger(__name__)

#: Worker names the CLI accepts, with a one-line description for ``--help``.
WORKERS = {
    "cf": "local processes (concurrent.futures), the default",
    "dask": "a dask.distributed cluster (--dask-address, or a private local cluster)",
    "slurm": "one sbatch job per task (needs Slurm accounting: sacct)",
    "debug": "serial, in this process (for debugging)",
}


class EngineError(RuntimeError):
    """A workflow failed while running; the message names the failing task and its log.

    ``failures``: the failed jobs read from the cache (:class:`~.failures.Failure`), first the
    one named in the message. ``crash_reports``: text reports written for them by the caller
    (:func:`prismflow.cli.crash.write_crash_reports`); the first one is named in the message.
    """

    def __init__(self, message: str, failures=None):
        super().__init__(message)
        self.message = message
        self.failures = list(failures or [])
        self.crash_reports: list[Path] = []

    def __str__(self) -> str:
        if self.crash_reports:
            more = len(self.crash_reports) - 1
            return (f"{self.message}; crash report: {self.crash_reports[0]}"
                    + (f" (and {more} more in the same log folders)" if more else ""))
        return self.message


@dataclass(frozen=True)
class EngineConfig:
    """How to execute workflows.

    Parameters
    ----------
    worker : one of :data:`WORKERS`.
    cache_root : pydra cache folder (the work directory's ``pydra`` subfolder).
    n_procs : local processes for ``cf`` (and for a private dask cluster).
    dask_address : scheduler address for ``dask``; ``None`` starts a private LocalCluster.
    sbatch_args : extra ``sbatch`` arguments for ``slurm`` (e.g. ``"-p gpu --mem=16G"``).
    """

    worker: str = "cf"
    cache_root: str = "work/pydra"
    n_procs: int = 1
    dask_address: str | None = None
    sbatch_args: str = ""

    def __post_init__(self):
        if self.worker not in WORKERS:
            raise ValueError(f"unknown worker {self.worker!r}; choose one of {sorted(WORKERS)}")
        if self.n_procs < 1:
            raise ValueError(f"n_procs must be >= 1, got {self.n_procs}")

    def to_dict(self) -> dict:
        return asdict(self)


def _make_submitter(cfg: EngineConfig) -> Submitter:
    from .workers import CfWorker, DebugWorker

    cache_root = Path(cfg.cache_root)
    if cfg.worker == "cf":
        return Submitter(cache_root=cache_root, worker=CfWorker, n_procs=cfg.n_procs)
    if cfg.worker == "dask":
        from .dask_worker import DaskWorker

        return Submitter(cache_root=cache_root, worker=DaskWorker,
                         address=cfg.dask_address, n_procs=cfg.n_procs)
    if cfg.worker == "slurm":
        return Submitter(cache_root=cache_root, worker="slurm", sbatch_args=cfg.sbatch_args)
    return Submitter(cache_root=cache_root, worker=DebugWorker)


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")


def _first_error_line(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line (workers send tracebacks as text)."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    text = f"{type(exc).__name__}: {exc}"
    hits = [m for m in map(_ERROR_LINE.match, text.splitlines()) if m]
    if hits:
        name, msg = hits[-1].groups()
        return f"{name}: {msg.strip()}"
    return text.splitlines()[0]


def _engine_error(cfg: EngineConfig, since: float, fallback: str) -> EngineError:
    """An :class:`EngineError` naming the first failed task found in the cache."""
    from .failures import collect_failures

    try:
        failures = collect_failures(cfg.cache_root, since)
    except Exception as err:  # never hide the run's own error behind a reporting error
        logger.warning("could not read the failed jobs from %s: %s", cfg.cache_root, err)
        failures = []
    if not failures:
        return EngineError(fallback)
    first = failures[0]
    what = f" ({first.what})" if first.what else ""
    more = f" [{len(failures) - 1} more task(s) failed]" if len(failures) > 1 else ""
    return EngineError(f"{first.label}{what} failed: {first.error_line}{more}", failures)


def run_task(task, cfg: EngineConfig, *, rerun: bool = False, progress=None):
    """Run ``task`` (a pydra task or workflow, possibly split) and return its outputs.

    ``progress``: an optional :class:`prismflow.progress.WorkflowProgress` that watches the
    submitter (tasks started and finished) for the live display and the step timings.

    The cache is leased for the run (:func:`~.cache.lease_cache`): what a failed or killed
    earlier run left in it is removed first, so a rerun resumes from the finished jobs.

    Raises
    ------
    EngineError
        When any job fails; the message names the failed task (node, what it does) and its
        first error line; ``.failures`` holds every failed job read from the cache.
    """
    from .cache import lease_cache

    start = time.perf_counter()
    logger.info("running %s with the %s worker (cache %s)", type(task).__name__,
                cfg.worker, cfg.cache_root)
    with lease_cache(cfg.cache_root):
        began = time.time() - 1.0  # error files of this run are newer (1 s: file-time rounding)
        try:
            with _make_submitter(cfg) as sub:
                if progress is not None:
                    progress.attach(sub)
                result = sub(task, raise_errors=True, rerun=rerun)
        except Exception as err:  # pydra re-raises the task's error with notes attached
            raise _engine_error(cfg, began, _first_error_line(err)) from err
        if result.errored:  # a failure pydra did not raise: its error file may not exist
            raise _engine_error(cfg, began, f"{type(task).__name__} failed")
    logger.info("%s finished in %.1f s", type(task).__name__, time.perf_counter() - start)
    return result.outputs
