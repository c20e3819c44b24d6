"""prismflow.io."""
