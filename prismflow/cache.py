"""The user cache folder of prismflow: one rule for every one-off build kept between runs.

``$PRISMFLOW_CACHE``, else ``$XDG_CACHE_HOME/prismflow``, else ``~/.cache/prismflow``; each kind
of build (FORCE libraries, ODF-FP dictionaries, trained SAE weights) gets a sub-folder.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the cache root.
CACHE_ENV = "PRISMFLOW_CACHE"


def user_cache_dir(kind: str | None = None) -> Path:
    """The cache root, or its sub-folder ``kind`` (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "prismflow")
    return Path(root) / kind if kind else Path(root)
