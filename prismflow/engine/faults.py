"""Fault injection for recovery tests and drills: make one named task fail or hang.

Set ``PRISMFLOW_INJECT_FAULT`` to a comma-separated list of ``<mode>@<node>[<index>]``:

* ``mode`` — ``fail`` (the task raises :class:`InjectedFault`), ``hang`` (the task prints one
  line to stderr, ``prismflow: injected hang in <node> …``, then sleeps until it is killed) or
  ``kill`` (the process running the task kills itself with SIGKILL, as the out-of-memory killer
  would; with ``--worker debug`` that is prismflow itself);
* ``node`` — the workflow node's name (``prepare``, ``plan_volume``, ``fit_slab``, ``stitch_volume``, …);
* ``index`` — optional state index of a split node (``fit_slab[1]``); all states when omitted.

Example: ``PRISMFLOW_INJECT_FAULT=fail@stitch_volume prismflow bids out participant``.

The engine's workers (``cf``, ``dask``, ``debug``) apply it in the process that runs the job,
after pydra has fixed the job's cache folder and inside pydra's own error handling, by swapping
the task's function: the failure then follows exactly the path of a real one (error and result
files, locks released, the workflow's error handling). Only Python-function tasks can be
targeted. Unset, it costs one environment lookup per job.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

ENV = "PRISMFLOW_INJECT_FAULT"

_SPEC = re.compile(r"^(fail|hang|kill)@([A-Za-z0-9_]+)(?:\[(\d+)\])?$")


class InjectedFault(RuntimeError):
    """The failure raised by ``fail@<node>``."""


def parse(text: str | None) -> list[tuple[str, str, int | None]]:
    """``"fail@fit_slab[1],hang@prepare"`` → ``[("fail", "fit_slab", 1),
    ("hang", "prepare", None)]``."""
    out = []
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        m = _SPEC.match(item)
        if not m:
            raise ValueError(f"{ENV}={text!r}: expected <fail|hang|kill>@<node>[<index>], "
                             f"got {item!r}")
        out.append((m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None))
    return out


class _Fault:
    """Callable that replaces a task's function (picklable by reference)."""

    def __init__(self, mode: str, node: str, index: int | None):
        self.mode, self.node, self.index = mode, node, index

    def __call__(self, **inputs):
        where = self.node + (f"[{self.index}]" if self.index is not None else "")
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "hang":
            print(f"prismflow: injected hang in {where} (pid {os.getpid()})", file=sys.stderr,
                  flush=True)
            while True:
                time.sleep(3600)
        raise InjectedFault(f"injected failure in {where} ({ENV})")


def arm(job) -> None:
    """Swap ``job``'s function for a fault when ``PRISMFLOW_INJECT_FAULT`` names it."""
    text = os.environ.get(ENV)
    if not text or not hasattr(job.task, "function"):
        return
    for mode, node, index in parse(text):
        if job.name == node and (index is None or job.state_index == index):
            job.checksum  # noqa: B018  (fix the cache folder from the real inputs first)
            object.__setattr__(job.task, "function", _Fault(mode, node, job.state_index))
            return
