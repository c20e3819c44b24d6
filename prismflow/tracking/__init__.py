"""prismflow.tracking."""
