"""prismflow.tasks."""
