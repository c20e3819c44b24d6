"""Thin, typed pydra tasks wrapping the core (file paths in, file paths out).

Each task body calls one core function; whatever logic a task needs lives in a plain function
next to it so that a unit test reaches it without pydra. Importing this package imports pydra's
``compose`` API only (never its submitter or workers: that is :mod:`prismflow.engine`).
"""

import os as _os

_os.environ.setdefault("NO_ET", "1")
