"""Reports: group-level tables and figures (matplotlib, Agg backend)."""
