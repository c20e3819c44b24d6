"""Limit the threads of the OpenBLAS copies that numpy/scipy load, around scipy calls.

scipy's ARPACK/LAPACK calls run on scipy's bundled OpenBLAS, which ignores
``torch.set_num_threads``; on a shared, loaded machine its default thread pool busy-waits
and makes small dense kernels 10–20× slower (measured here: a 323×323 generalised ``eigh``
took 0.5 s with the default pool and 0.03 s with one thread). ``blas_threads(n)`` sets
the pools of the loaded OpenBLAS libraries to ``n`` threads for the duration of a block, via
the libraries' own ``*_set_num_threads`` entry points (found through ``/proc/self/maps``),
else via ``threadpoolctl`` when it is installed (a no-op elsewhere).
The propagation's numpy products run inside it too: with numpy's default two OpenBLAS
threads on the loaded 2-core machine the 323-vertex forward + backward took 0.47 CPU s
instead of 0.28.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

_HANDLES: dict = {}
_SCAN: dict = {"n_modules": -1, "libs": []}


def _openblas_libs():
    """(setter, getter) pairs of the OpenBLAS libraries loaded now.

    Reading ``/proc/self/maps`` takes ≈ 4 ms with torch loaded, so the scan is redone only
    when the number of imported modules changed (a new native library comes with an import).
    """
    n_mod = len(sys.modules)
    if _SCAN["n_modules"] != n_mod:
        _SCAN["libs"] = _scan_openblas_libs()
        _SCAN["n_modules"] = n_mod
    return _SCAN["libs"]


def _scan_openblas_libs():
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()
                     and line.split()[-1].startswith("/")}
    except OSError:
        paths = set()
    libs = []
    for path in sorted(paths):
        if path not in _HANDLES:
            _HANDLES[path] = _handle(path)
        if _HANDLES[path] is not None:
            libs.append(_HANDLES[path])
    return libs


def _handle(path):
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for set_name, get_name in (("scipy_openblas_set_num_threads64_",
                                "scipy_openblas_get_num_threads64_"),
                               ("scipy_openblas_set_num_threads",
                                "scipy_openblas_get_num_threads"),
                               ("openblas_set_num_threads", "openblas_get_num_threads")):
        setter = getattr(lib, set_name, None)
        getter = getattr(lib, get_name, None)
        if setter is not None and getter is not None:
            setter.argtypes = [ctypes.c_int]
            getter.restype = ctypes.c_int
            return setter, getter
    return None


@contextlib.contextmanager
def blas_threads(n: int = 1):
    """Run the block with at most ``n`` OpenBLAS threads (numpy/scipy), then restore.

    The libraries' own entry points are used when found (microseconds per use); otherwise
    ``threadpoolctl`` when installed (milliseconds: it rescans the loaded libraries).
    """
    libs = _openblas_libs()
    if not libs:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
            return
        with threadpool_limits(limits=n, user_api="blas"):
            yield
        return
    old = []
    for setter, getter in libs:
        try:
            old.append(getter())
            setter(n)
        except Exception:  # a foreign build without these symbols: leave it alone
            old.append(None)
    try:
        yield
    finally:
        for (setter, _), o in zip(libs, old):
            if o is not None:
                setter(o)
