"""prismflow.phantoms."""
