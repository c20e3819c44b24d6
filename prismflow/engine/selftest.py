"""A tiny split/combine workflow to check that a worker runs jobs (used by tests and CI).

``run_selftest(EngineConfig(worker="slurm", ...))`` returns the squares of 0..n-1 computed in
separate jobs, plus the process ids and host names that ran them.
"""

from __future__ import annotations

import os
import socket

from pydra.compose import workflow

from prismflow.tasks._define import python_task

from .submit import EngineConfig, run_task


@python_task(outputs=["square", "where"])
def Square(x: int) -> tuple[int, str]:
    """x² and ``host:pid`` of the process that computed it."""
    return x * x, f"{socket.gethostname()}:{os.getpid()}"


@python_task(outputs=["total"])
def Sum(values: list[int]) -> int:
    return int(sum(values))


@workflow.define(outputs=["squares", "total", "where"])
def SelfTest(n: int) -> tuple[list[int], int, list[str]]:
    """Split over ``range(n)`` then combine: the pattern every prismflow workflow uses."""
    sq = workflow.add(Square().split(x=list(range(n))).combine("x"), name="square")
    total = workflow.add(Sum(values=sq.square), name="sum")
    return sq.square, total.total, sq.where


def run_selftest(cfg: EngineConfig, n: int = 4):
    """Run :class:`SelfTest` with ``cfg``; return its outputs (squares, total, where)."""
    return run_task(SelfTest(n=n), cfg)
