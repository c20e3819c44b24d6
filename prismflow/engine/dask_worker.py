"""A small pydra worker that runs jobs on a ``dask.distributed`` cluster.

pydra 1.0a12 ships no dask worker (the plugin package was never published), so this is ours.
Each job is cloudpickled in the submitting process (as pydra's ``cf`` worker does), shipped to a
dask worker and run there with :meth:`pydra.engine.job.Job.run`; the cache directory must
therefore be on a file system that the dask workers share with the submitter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import typing as ty

import attrs
import cloudpickle as cp

import pydra.engine.submitter  # noqa: F401  (import before pydra.workers.base: circular import)
from pydra.workers import base

logger = logging.getLogger(__name__)


def _quiet_distributed() -> None:
    """Keep dask.distributed's INFO chatter out of the application's output (here and in the
    worker processes it spawns) unless the application itself logs at DEBUG."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    import dask

    dask.config.set({"logging.distributed": "warning"})
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.WARNING)


def _uncloudpickle_and_run(job_pkl: bytes, rerun: bool):
    """Run a cloudpickled pydra job on a dask worker and return its result."""
    from .faults import arm

    job = cp.loads(job_pkl)
    arm(job)
    return job.run(rerun=rerun)


@attrs.define
class DaskWorker(base.Worker):
    """Run pydra jobs on a dask cluster.

    Parameters
    ----------
    address : scheduler address (``tcp://host:8786``); ``None`` starts a private
        ``LocalCluster`` with ``n_procs`` single-threaded worker processes.
    n_procs : workers of the private local cluster (ignored with ``address``).
    """

    _plugin_name = "dask"

    address: str | None = None
    n_procs: int = 1
    _client: ty.Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _cluster: ty.Any = attrs.field(default=None, init=False, eq=False, repr=False)

    def __getstate__(self) -> dict[str, ty.Any]:
        state = super().__getstate__()
        state["_client"] = None
        state["_cluster"] = None
        return state

    def _get_client(self):
        if self._client is None:
            _quiet_distributed()
            from dask.distributed import Client, LocalCluster

            if self.address:
                logger.info("connecting to dask scheduler at %s", self.address)
                self._client = Client(self.address)
            else:
                logger.info("starting a local dask cluster with %d workers", self.n_procs)
                self._cluster = LocalCluster(n_workers=self.n_procs, threads_per_worker=1,
                                             processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    async def run(self, job, rerun: bool = False):
        """Ship ``job`` to the cluster and wait for its result without blocking the loop."""
        client = self._get_client()
        job_pkl = cp.dumps(job)
        future = client.submit(_uncloudpickle_and_run, job_pkl, rerun, pure=False,
                               key=f"{job.name}-{job.uid}-{id(job_pkl)}")
        loop = self.loop or asyncio.get_running_loop()
        return await loop.run_in_executor(None, future.result)

    def close(self):
        """Close the client (and the private cluster, when this worker started one)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
