"""On-disk cache of one-off builds (FORCE libraries, ODF-FP dictionaries), safe across processes.

A builder holds ``<file>.lock`` (created with O_EXCL) while it builds; other processes asking
for the same file wait for it instead of building it a second time. A lock older than
``stale_s`` is treated as abandoned.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


def default_cache_dir(kind: str) -> str:
    """The cache folder of builds of ``kind`` (:func:`prismflow.cache.user_cache_dir`)."""
    from ..cache import user_cache_dir

    return str(user_cache_dir(kind))


@contextmanager
def build_lock(path: Path, *, stale_s: float = 3 * 3600.0, poll_s: float = 5.0):
    """Hold the build lock of ``path``; yields True if the caller must build, False if another
    process finished the file while we waited."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    waited = False
    while True:
        if path.is_file():
            yield False
            return
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            break
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > stale_s:
                logger.warning("removing stale build lock %s (%.0f s old)", lock, age)
                lock.unlink(missing_ok=True)
                continue
            if not waited:
                logger.info("waiting for another process building %s", path)
                waited = True
            time.sleep(poll_s)
    try:
        yield not path.is_file()
    finally:
        lock.unlink(missing_ok=True)
