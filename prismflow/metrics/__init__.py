"""prismflow.metrics."""
