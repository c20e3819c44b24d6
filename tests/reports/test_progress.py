"""Workflow progress: the engine hook sees every finished task; heartbeats give slab ETAs."""

from __future__ import annotations

import json
import logging
import os
import pickle
import time

import pytest
from pydra.compose import python, workflow

from prismflow.engine import EngineConfig, run_task
from prismflow.progress import HEARTBEAT_ENV, Progress, WorkflowProgress, _Hook

os.environ.setdefault("NO_ET", "1")


@python.define
def Add(a: int, b: int) -> int:
    return a + b


@workflow.define(outputs=["added", "three"])
def Tiny(xs: list[int]) -> tuple[list[int], int]:
    add = workflow.add(Add(b=1).split(a=xs).combine("a"), name="add")
    one = workflow.add(Add(a=1, b=2), name="one")
    return add.out, one.out


def test_log_mode_one_line_per_finished_task(tmp_path, caplog):
    prog = WorkflowProgress("log")
    with caplog.at_level(logging.INFO, logger="prismflow.progress"):
        with prog:
            out = run_task(Tiny(xs=[1, 2, 3]), EngineConfig(worker="debug",
                                                             cache_root=str(tmp_path)),
                           progress=prog)
    assert list(out.added) == [2, 3, 4] and out.three == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "prismflow.progress"]
    finished = [ln for ln in lines if "finished in" in ln]
    # 3 split jobs of "add" + 1 job of "one": one line each, with a running count
    assert len(finished) == 4, lines
    assert sum("add[" in ln for ln in finished) == 3
    steps = {s["name"]: s["jobs"] for s in prog.steps()}
    assert steps == {"add": 3, "one": 1}
    assert not any(s["cached"] for s in prog.steps())
    assert os.environ.get(HEARTBEAT_ENV) is None     # restored on exit
    assert [ln.split("]")[0] for ln in finished] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    again = WorkflowProgress("off")    # one more input: add[0..2] and "one" come from the cache
    with again:
        run_task(Tiny(xs=[1, 2, 3, 4]), EngineConfig(worker="debug", cache_root=str(tmp_path)),
                 progress=again)
    cached = {s["name"]: (s["jobs"], s["cached"]) for s in again.steps()}
    assert cached == {"add": (4, False), "one": (1, True)}


def test_off_mode_is_silent(tmp_path, caplog):
    prog = WorkflowProgress("off")
    with caplog.at_level(logging.INFO, logger="prismflow.progress"):
        with prog:
            run_task(Tiny(xs=[5]), EngineConfig(worker="debug", cache_root=str(tmp_path)),
                     progress=prog)
    assert not [r for r in caplog.records if r.name == "prismflow.progress"]
    assert {s["name"] for s in prog.steps()} == {"add", "one"}   # timings still recorded


def test_heartbeat_gives_iterations_and_eta(tmp_path, monkeypatch):
    prog = WorkflowProgress("log")
    with prog:
        # a loop in a (here: the same) process reports through the heartbeat folder
        bar = Progress(100, "slab 0 [0:4)", enabled=False)
        bar.update(10, loss=0.5)
        time.sleep(0.05)
        bar._beat_at = 0.0
        bar.update(10, loss=0.25)
        beats = prog.heartbeats()
        assert len(beats) == 1
        hb = beats[0]
        assert hb["done"] == 20 and hb["total"] == 100 and hb["loss"] == 0.25
        assert 0 < hb["eta_s"] < 3600
        bar.close()
        assert prog.heartbeats() == []        # a finished loop leaves the display


def test_hook_pickles_without_the_display():
    """pydra pickles the submitter into every job: the hook must travel as a pass-through."""
    hook = _Hook(WorkflowProgress("log"), sorted)
    back = pickle.loads(pickle.dumps(hook))
    assert back.progress is None and back([3, 1]) == [1, 3]


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="progress mode"):
        WorkflowProgress("loud")


def test_live_mode_draws_the_counts(tmp_path, capsys):
    prog = WorkflowProgress("live", refresh_s=0.05)
    with prog:
        run_task(Tiny(xs=[1, 2]), EngineConfig(worker="debug", cache_root=str(tmp_path)),
                 progress=prog)
    err = capsys.readouterr().err
    assert "3/3 tasks done" in err
