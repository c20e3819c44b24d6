"""A failed or killed run never poisons the cache (engine level, seconds).

pydra 1.0a12 alone fails these: a rerun after a failed task reads the stale errored result
before the worker reruns the job and reports the run failed ("… NOT RETRIEVED").
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys

import pytest
from pydra.compose import workflow

from prismflow.engine import EngineConfig, EngineError, run_task
from prismflow.engine.cache import LEASE_NAME, clean_stale, job_state, lease_cache
from prismflow.engine.faults import ENV, InjectedFault, parse
from prismflow.engine.selftest import run_selftest


@pytest.mark.parametrize("worker", ["debug", "cf"])
def test_rerun_after_injected_failure_succeeds(tmp_path, monkeypatch, worker):
    cfg = EngineConfig(worker=worker, cache_root=str(tmp_path), n_procs=2)
    monkeypatch.setenv(ENV, "fail@square[2]")
    with pytest.raises(EngineError) as info:
        run_selftest(cfg, n=4)
    (failure,) = info.value.failures
    assert failure.label == "square[2]" and failure.inputs == {"x": 2}
    assert "InjectedFault" in failure.error_line
    assert failure.what.startswith("x²")                      # named by what it does
    assert job_state(failure.cache_dir) == "failed"
    monkeypatch.delenv(ENV)
    out = run_selftest(cfg, n=4)                               # same cache, same command
    assert out.squares == [0, 1, 4, 9] and out.total == 14
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())


def test_finished_jobs_are_reused_after_a_failure(tmp_path, monkeypatch):
    cfg = EngineConfig(worker="cf", cache_root=str(tmp_path), n_procs=2)
    monkeypatch.setenv(ENV, "fail@sum")
    with pytest.raises(EngineError, match=r"^sum failed: InjectedFault"):
        run_selftest(cfg, n=3)
    before = {p.name for p in tmp_path.glob("python-*") if job_state(p) == "done"}
    assert len(before) == 3                                    # the three squares finished
    monkeypatch.delenv(ENV)
    out = run_selftest(cfg, n=3)
    assert out.total == 5
    after = {p.name for p in tmp_path.glob("python-*") if job_state(p) == "done"}
    assert before < after                                      # kept, plus the new sum


def _fake_job(root, name, *, result=False, error=False):
    d = root / name
    d.mkdir()
    (d / "_job.pklz").write_bytes(b"x")
    if result:
        (d / "_result.pklz").write_bytes(b"x")
    if error:
        (d / "_error.pklz").write_bytes(b"x")
    return d


def test_clean_stale_removes_failed_unfinished_and_dead_locks(tmp_path):
    done = _fake_job(tmp_path, "python-aaa", result=True)
    failed = _fake_job(tmp_path, "python-bbb", result=True, error=True)
    killed = _fake_job(tmp_path, "python-ccc")
    (tmp_path / "python-ccc.lock").write_text("")                      # old filelock: empty
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake_job(tmp_path, "python-ddd")
    (tmp_path / "python-ddd.lock").write_text(f"{dead.pid}\n{socket.gethostname()}\n")
    live = _fake_job(tmp_path, "python-eee")                           # an orphan still running
    (tmp_path / "python-eee.lock").write_text(f"{os.getpid()}\n{socket.gethostname()}\n")
    (tmp_path / "0123abcd_info.json").write_text("{}")
    report = clean_stale(tmp_path)
    assert done.is_dir() and not failed.exists() and not killed.exists()
    assert not (tmp_path / "python-ddd").exists() and not (tmp_path / "python-ddd.lock").exists()
    assert live.is_dir() and (tmp_path / "python-eee.lock").exists()
    assert report.failed == ["python-bbb"] and sorted(report.unfinished) == ["python-ccc",
                                                                           "python-ddd"]
    assert not (tmp_path / "0123abcd_info.json").exists()


def test_cache_in_use_by_a_live_run_is_shared_not_cleaned(tmp_path):
    failed = _fake_job(tmp_path, "python-bbb", result=True, error=True)
    fd = os.open(tmp_path / LEASE_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)                                  # another run's lease
        with lease_cache(tmp_path) as report:
            assert report.removed == 0 and failed.is_dir()
    finally:
        os.close(fd)
    with lease_cache(tmp_path) as report:                              # alone: cleans
        assert report.failed == ["python-bbb"]


def test_fault_spec_parsing():
    assert parse("fail@fit_slab[1], hang@prepare,kill@x") == [
        ("fail", "fit_slab", 1), ("hang", "prepare", None), ("kill", "x", None)]
    with pytest.raises(ValueError, match="expected"):
        parse("explode@prepare")
    assert issubclass(InjectedFault, RuntimeError)


@workflow.define
def BrokenWorkflow(x: int) -> int:
    """Build a workflow that cannot be built."""
    raise ValueError(f"cannot build for x={x}")


def test_workflow_level_failure_is_named_after_the_workflow(tmp_path):
    """No task failed (the workflow could not be built): the workflow is reported, by name."""
    with pytest.raises(EngineError) as info:
        run_task(BrokenWorkflow().split(x=[1]), EngineConfig(worker="debug",
                                                             cache_root=str(tmp_path)))
    first = info.value.failures[0]
    assert first.workflow and "BrokenWorkflow" in str(info.value).split(" failed")[0]
    assert "ValueError: cannot build for x=1" in first.error_line


def test_worker_process_killed_then_rerun(tmp_path, monkeypatch):
    """A cf worker killed mid-task (as by the out-of-memory killer): one clear line, then the
    rerun with the same cache succeeds."""
    cfg = EngineConfig(worker="cf", cache_root=str(tmp_path), n_procs=2)
    monkeypatch.setenv(ENV, "kill@square[1]")
    with pytest.raises(EngineError) as info:
        run_selftest(cfg, n=4)
    assert "BrokenProcessPool" in str(info.value) and "worker process died" in str(info.value)
    monkeypatch.delenv(ENV)
    assert run_selftest(cfg, n=4).squares == [0, 1, 4, 9]
