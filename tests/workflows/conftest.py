"""The workflows package lives at the repository's top level and is installed as
``prismflow.workflows``; make it importable from a source checkout too."""

from prismflow.cli import import_workflows

import_workflows()
