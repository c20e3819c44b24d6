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
    """A workflow failed while running; the message names the failing task and its log."""


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
    cache_root = Path(cfg.cache_root)
    if cfg.worker == "cf":
        return Submitter(cache_root=cache_root, worker="cf", n_procs=cfg.n_procs)
    if cfg.worker == "dask":
        from .dask_worker import DaskWorker

        return Submitter(cache_root=cache_root, worker=DaskWorker,
                         address=cfg.dask_address, n_procs=cfg.n_procs)
    if cfg.worker == "slurm":
        return Submitter(cache_root=cache_root, worker="slurm", sbatch_args=cfg.sbatch_args)
    return Submitter(cache_root=cache_root, worker="debug")


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


def run_task(task, cfg: EngineConfig, *, rerun: bool = False, progress=None):
    """Run ``task`` (a pydra task or workflow, possibly split) and return its outputs.

    ``progress``: an optional :class:`prismflow.progress.WorkflowProgress` that watches the
    submitter (tasks started and finished) for the live display and the step timings.

    Raises
    ------
    EngineError
        When any job fails; the message carries the first error line and the crash file.
    """
    start = time.perf_counter()
    logger.info("running %s with the %s worker (cache %s)", type(task).__name__,
                cfg.worker, cfg.cache_root)
    with _make_submitter(cfg) as sub:
        if progress is not None:
            progress.attach(sub)
        try:
            result = sub(task, raise_errors=True, rerun=rerun)
        except Exception as err:  # pydra re-raises the task's error with notes attached
            notes = [n for n in getattr(err, "__notes__", []) if "crash report" in n]
            msg = _first_error_line(err)
            raise EngineError(msg + (f" ({notes[-1].strip()})" if notes else "")) from err
    if result.errored:
        raise EngineError(f"{type(task).__name__} failed; see {result.cache_dir}/_error.pklz")
    logger.info("%s finished in %.1f s", type(task).__name__, time.perf_counter() - start)
    return result.outputs
