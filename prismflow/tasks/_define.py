"""``python_task``: pydra's ``python.define`` with the task function importable by reference.

Why: ``@python.define`` rebinds the function's module-level name to the task class, so the
function itself is no longer reachable as ``module.<qualname>``. cloudpickle then pickles it
*by value* when a job is shipped to a ``cf``/dask/slurm worker, and cloudpickle ≥ 3.1.3 renames
the source file of such functions to ``<dynamic-code>``. pydra 1.0a12 hashes a function by its
source (``inspect.getsource``), so the worker, unable to read that source, falls back to the
byte code and computes a different input hash than the parent: "Input field hashes have changed
during the execution of the job". Binding the function under a private module-level name that
matches its ``__qualname__`` makes cloudpickle pickle it by reference: the worker imports the
very same function from the installed module, reads the same source, and the hashes agree
whatever the cloudpickle version.
"""

from __future__ import annotations

import sys
from typing import Callable

from pydra.compose import python


def python_task(*, outputs: list[str] | None = None, **define_kwargs) -> Callable:
    """Decorator: ``python.define(fn, outputs=...)``, with ``fn`` kept importable by reference.

    The task class keeps the function's public name (``PrepareDwi``); the plain function lives
    on as ``_PrepareDwi_function`` in the same module.
    """

    def decorate(fn: Callable):
        module = sys.modules[fn.__module__]
        private = f"_{fn.__name__}_function"
        fn.__qualname__ = private
        setattr(module, private, fn)
        kwargs = dict(define_kwargs)
        if outputs is not None:
            kwargs["outputs"] = outputs
        return python.define(fn, **kwargs)

    return decorate
