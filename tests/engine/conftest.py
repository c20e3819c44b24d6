"""Shared set-up for the engine tests: no online checks, one thread per process."""

import os

os.environ.setdefault("NO_ET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
