"""prismflow.cli."""
