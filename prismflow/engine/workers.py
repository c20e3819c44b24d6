"""pydra's ``cf`` and ``debug`` workers with two additions of ours.

* Fault injection (:mod:`prismflow.engine.faults`) is applied in the process that runs a job.
* ``cf`` pool processes die with the process that started them (Linux ``PR_SET_PDEATHSIG``):
  pydra's pool processes otherwise outlive a killed ``prismflow`` (``kill -9``, out of memory)
  and sit idle for ever.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
import sys

import attrs
import cloudpickle as cp

import pydra.engine.submitter  # noqa: F401  (import before pydra.workers: circular import)
from pydra.workers import cf as pydra_cf
from pydra.workers import debug as pydra_debug

from . import faults


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: ask the kernel to SIGKILL this process when its parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@attrs.define
class CfWorker(pydra_cf.ConcurrentFuturesWorker):
    """pydra's ``cf`` worker: a local process pool, see the module docstring."""

    _plugin_name = "cf"

    def __attrs_post_init__(self):
        self.pool.shutdown(wait=False)  # no process was started yet
        self.pool = self._make_pool()

    def _make_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.n_procs, initializer=_die_with_parent,
                                      initargs=(os.getpid(),))

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        self.pool = self._make_pool()

    @classmethod
    def uncloudpickle_and_run(cls, job_pkl: bytes, rerun: bool):
        job = cp.loads(job_pkl)
        faults.arm(job)
        return job.run(rerun=rerun)


class DebugWorker(pydra_debug.DebugWorker):
    """pydra's serial ``debug`` worker, with fault injection."""

    _plugin_name = "debug"

    def run(self, job, rerun: bool = False):
        faults.arm(job)
        return job.run(rerun=rerun)
