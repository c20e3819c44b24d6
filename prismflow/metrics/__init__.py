"""Metrics: fibre peak scores (angular error, recall, F1), Chamfer distances, paired differences."""
