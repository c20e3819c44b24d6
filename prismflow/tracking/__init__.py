"""Tractography on any peaks source, and connectomes (core: no workflow code)."""

from .connectome import connectome, load_connectome_csv, save_connectome_csv
from .streamlines import TrackingConfig, load_trk, save_trk, track_peaks

__all__ = ["TrackingConfig", "track_peaks", "save_trk", "load_trk", "connectome",
           "save_connectome_csv", "load_connectome_csv"]
