"""prismflow.prism."""
