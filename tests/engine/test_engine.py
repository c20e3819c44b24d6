"""The engine runs split/combine workflows on cf, debug and dask workers; failures are one line."""

from __future__ import annotations

import os

import pytest
from pydra.compose import python, workflow

from prismflow.engine import EngineConfig, EngineError, run_task
from prismflow.engine.selftest import run_selftest
from prismflow.io import InputError


@python.define
def Fails(x: int) -> int:
    """Check the gradient table of one series."""
    if x == 2:
        raise InputError("sub-02_dwi.nii.gz has 64 volumes but dwi.bval lists 65 b-values")
    return x


@workflow.define
def FailingWorkflow(x: int) -> int:
    return workflow.add(Fails(x=x)).out


def test_engine_config_validates():
    with pytest.raises(ValueError, match="unknown worker"):
        EngineConfig(worker="sge")
    with pytest.raises(ValueError, match="n_procs"):
        EngineConfig(n_procs=0)
    assert EngineConfig(worker="dask").to_dict()["worker"] == "dask"


@pytest.mark.parametrize("worker", ["debug", "cf"])
def test_selftest_local_workers(tmp_path, worker):
    out = run_selftest(EngineConfig(worker=worker, cache_root=str(tmp_path), n_procs=2), n=4)
    assert out.squares == [0, 1, 4, 9]
    assert out.total == 14


@pytest.mark.parametrize("worker", ["debug", "cf"])
def test_failure_is_reported_as_one_line(tmp_path, worker):
    wf = FailingWorkflow().split(x=[1, 2])
    with pytest.raises(EngineError) as info:
        run_task(wf, EngineConfig(worker=worker, cache_root=str(tmp_path), n_procs=2))
    msg = str(info.value)
    assert "\n" not in msg
    # named by what it does, with the innermost error line (not pydra's "'Split' job")
    assert msg.startswith("Fails (Check the gradient table of one series) failed: "
                          "InputError: sub-02_dwi.nii.gz has 64 volumes"), msg
    assert "Split" not in msg
    (failure,) = info.value.failures
    assert failure.inputs == {"x": 2} and failure.task == "Fails"
    assert "Traceback" in failure.traceback and (failure.cache_dir / "_error.pklz").is_file()


def test_cache_makes_rerun_instant(tmp_path):
    cfg = EngineConfig(worker="cf", cache_root=str(tmp_path), n_procs=2)
    first = run_selftest(cfg, n=3)
    again = run_selftest(cfg, n=3)
    assert again.squares == first.squares
    assert again.where == first.where      # served from the cache: same processes recorded


def test_dask_worker_on_localcluster(tmp_path):
    """--worker dask against a dask.distributed LocalCluster (about 5-10 s)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        cfg = EngineConfig(worker="dask", cache_root=str(tmp_path), dask_address=cluster.scheduler_address)
        out = run_selftest(cfg, n=4)
        with distributed.Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
    assert out.squares == [0, 1, 4, 9]
    pids = {int(w.split(":")[1]) for w in out.where}
    assert pids <= worker_pids and os.getpid() not in pids


def test_dask_worker_private_cluster(tmp_path):
    """--worker dask without an address starts (and closes) its own LocalCluster."""
    pytest.importorskip("dask.distributed")
    out = run_selftest(EngineConfig(worker="dask", cache_root=str(tmp_path), n_procs=2), n=3)
    assert out.squares == [0, 1, 4]
