"""prismflow.engine."""
