"""prismflow.remidi."""
