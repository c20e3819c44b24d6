"""prismflow.reports."""
