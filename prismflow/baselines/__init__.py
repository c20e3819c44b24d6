"""prismflow.baselines."""
