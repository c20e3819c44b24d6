"""Execution engine: the one place in prismflow that talks to pydra's Submitter and workers.

Everything above (the CLI) asks :func:`run_task` to run a pydra task or workflow with a named
worker; everything below (``prismflow.tasks``, ``prismflow.workflows``) only *defines* tasks.
"""

from .submit import EngineConfig, EngineError, WORKERS, run_task

__all__ = ["EngineConfig", "EngineError", "WORKERS", "run_task"]
