"""Command-line entry points (``prismflow`` BIDS app; ``prismflow-fit``, ``prismflow-mesh``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def import_workflows():
    """Import ``prismflow.workflows`` (the top-level ``workflows/`` folder).

    Installed packages map it through setuptools' ``package-dir``; when prismflow is imported
    straight from a source tree (``python -m pytest`` or ``python -m prismflow.cli.run`` in the
    repository root, where ``./prismflow`` shadows the installed package) that mapping is not
    applied, so we load the sibling ``workflows/`` folder under the same name.
    """
    try:
        return importlib.import_module("prismflow.workflows")
    except ModuleNotFoundError:
        src = Path(__file__).resolve().parents[2] / "workflows" / "__init__.py"
        if not src.is_file():
            raise
        spec = importlib.util.spec_from_file_location(
            "prismflow.workflows", src, submodule_search_locations=[str(src.parent)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["prismflow.workflows"] = mod
        spec.loader.exec_module(mod)
        import prismflow

        prismflow.workflows = mod
        return mod
