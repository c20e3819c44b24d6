"""pydra workflows of prismflow, shipped as ``prismflow.workflows``."""
